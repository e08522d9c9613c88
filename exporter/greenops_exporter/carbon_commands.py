"""Carbon-aware commands: greenest-window, carbon-gate, regions, and measure (the energy
and carbon of one command)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from .analysis.bottleneck import BottleneckClass
from .analysis.carbon import greenest_window, operational_grams
from .backends.base import Backend
from .collect import Collector, CollectSettings, DeviceSnapshot, Snapshot
from .errors import UsageError
from .sources.carbon_intensity import STATIC, CarbonChain, CarbonReading

# UK government GHG conversion factors: an average car of unknown fuel, about 0.17 kgCO2e/km
CAR_GRAMS_PER_KM = 170.0
GATE_EXIT = 3


def parse_duration(text: str) -> timedelta:
    """'4h', '90m', '30s', '1h30m' or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"{text!r}: expected a duration like 4h, 90m, 1h30m or seconds")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return timedelta(seconds=sum(float(n) * unit[u] for n, u in parts))


async def poll_chain(chain: CarbonChain) -> CarbonReading:
    """Ask every live source once, then take the chain's answer (the table at worst)."""
    await asyncio.gather(*(s.poll_once() for s in chain.sources))
    for s in chain.sources:
        await s.close()
    return chain.current()


def greenest(chain: CarbonChain, duration: timedelta, within: timedelta) -> int:
    reading = asyncio.run(poll_chain(chain))
    forecast = chain.forecast()
    now = datetime.now(UTC)
    best = greenest_window(forecast, now, duration, within)
    if best is None:
        print(
            f"no forecast covers a {_span(duration)} window within {_span(within)} "
            f"for zone {chain.zone} "
            f"(intensity now: {reading.now.grams_per_kwh:.0f} g/kWh from {reading.now.source}); "
            "configure a live source with forecasts (carbon.sources)"
        )
        return 1
    wait = best.start - now
    print(f"greenest {_span(duration)} window within {_span(within)} in {chain.zone}:")
    print(f"  starts  {best.start.isoformat(timespec='minutes')} (in {_human(wait)})")
    print(f"  mean    {best.mean_grams_per_kwh:.0f} gCO2e/kWh")
    print(
        f"  saving  {best.saving_ratio:.0%} against starting now "
        f"({best.now_mean_grams_per_kwh:.0f} gCO2e/kWh)"
    )
    return 0


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes:02d} min"


def _human(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def carbon_gate(chain: CarbonChain, max_intensity: float) -> int:
    reading = asyncio.run(poll_chain(chain)).now
    verdict = reading.grams_per_kwh <= max_intensity
    print(
        f"grid intensity in {reading.zone}: {reading.grams_per_kwh:.0f} gCO2e/kWh "
        f"({reading.source}); limit {max_intensity:.0f}: "
        + ("green enough, go" if verdict else "too dirty, defer")
    )
    return 0 if verdict else GATE_EXIT


def regions(energy_kwh: float, names: Sequence[str] | None, pue: float) -> int:
    chosen = list(names) if names else sorted(k for k in STATIC if k != "world")
    unknown = [n for n in chosen if n not in STATIC]
    if unknown:
        raise UsageError(f"--regions: unknown {', '.join(unknown)} (see the README's table)")
    rows = sorted(
        (
            (name, operational_grams(energy_kwh * 3.6e6, pue, STATIC[name].grams_per_kwh))
            for name in chosen
        ),
        key=lambda row: row[1],
    )
    print(f"{energy_kwh:g} kWh at PUE {pue:g}:")
    print(f"{'region':<32} {'gCO2e/kWh':>10} {'kgCO2e':>9}  source (year)")
    for name, grams in rows:
        v = STATIC[name]
        print(f"{name:<32} {v.grams_per_kwh:>10.1f} {grams / 1000:>9.2f}  {v.source} ({v.year})")
    return 0


# --- measure ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    command: list[str]
    exit_code: int
    seconds: float
    gpus: list[str]
    energy_joules: float
    class_seconds: dict[str, float]
    class_joules: dict[str, float]
    idle_joules: float
    operational_grams: float
    embodied_grams: float
    energy_cost: float
    rental_cost: float
    currency: str
    intensity: float
    intensity_source: str
    pue: float

    def as_json(self) -> dict[str, Any]:
        """The stable `measure --json` contract: later releases add keys, never rename."""
        total = sum(self.class_seconds.values())
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.seconds, 3),
            "gpus": self.gpus,
            "energy_joules": round(self.energy_joules, 3),
            # over the GPU's own clock (a replay at 10x covers ten times the wall time)
            "mean_power_watts": round(self.energy_joules / total, 3) if total else 0.0,
            "class_share": {
                c: round(s / total, 4) if total else 0.0 for c, s in self.class_seconds.items()
            },
            "energy_joules_by_class": {c: round(j, 3) for c, j in self.class_joules.items()},
            "waste_energy_joules": round(
                self.class_joules.get("idle", 0.0) + self.class_joules.get("overhead", 0.0), 3
            ),
            "idle_energy_joules": round(self.idle_joules, 3),
            "carbon_grams_operational": round(self.operational_grams, 4),
            "carbon_grams_embodied": round(self.embodied_grams, 4),
            "intensity_grams_per_kwh": self.intensity,
            "intensity_source": self.intensity_source,
            "pue": self.pue,
            "cost": {
                "energy": round(self.energy_cost, 6),
                "rental": round(self.rental_cost, 6),
                "currency": self.currency,
            },
            "equivalent_km_driven": round(
                (self.operational_grams + self.embodied_grams) / CAR_GRAMS_PER_KM, 4
            ),
        }


def _tree(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.Error:
        return {pid}


def _delta(after: DeviceSnapshot, before: DeviceSnapshot | None) -> dict[str, float]:
    def get(d: DeviceSnapshot | None, attr: str) -> float:
        if d is None:
            return 0.0
        if attr.startswith("class_s:"):
            return d.waste.class_seconds.get(BottleneckClass(attr[8:]), 0.0)
        if attr.startswith("class_j:"):
            return d.waste.class_joules.get(BottleneckClass(attr[8:]), 0.0)
        return {
            "energy": d.energy_joules_total,
            "idle": d.waste.idle_joules_no_holder + d.waste.idle_joules_with_holder,
            "op": d.costs.operational_grams,
            "emb": d.costs.embodied_grams,
            "ecost": d.costs.energy_cost,
            "rcost": d.costs.rental_cost,
        }[attr]

    keys = ["energy", "idle", "op", "emb", "ecost", "rcost"]
    keys += [f"class_s:{c.value}" for c in BottleneckClass] + [
        f"class_j:{c.value}" for c in BottleneckClass
    ]
    return {k: get(after, k) - get(before, k) for k in keys}


async def measure(
    command: Sequence[str],
    backend: Backend,
    reason: str,
    settings: CollectSettings,
    chain: CarbonChain,
    pue: float,
) -> Measurement:
    """Run the command while collecting; attribute the GPUs its process tree used (all of
    them on the sim and replay backends, whose processes are not real)."""
    collector = Collector(
        backend, replace(settings, energy_anchor_seconds=0.0), reason, carbon=chain
    )
    for source in chain.sources:
        await source.poll_once()
    before = await collector.collect_once()
    if not before.backend_up:
        await collector.close()
        raise UsageError(f"cannot measure: backend {backend.name} is unavailable ({reason})")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(*command)
    except OSError as exc:
        await collector.close()
        raise UsageError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
    used: set[str] = set()
    snap: Snapshot = before
    while True:
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=settings.interval_seconds)
        except TimeoutError:
            code = None
        snap = await collector.collect_once()
        pids = _tree(proc.pid)
        for d in snap.devices:
            if d.reading is not None and any(p.pid in pids for p in d.reading.processes):
                used.add(d.info.uuid)
        if code is not None:
            break
    seconds = time.monotonic() - started
    await collector.close()
    simulated = backend.name in ("sim", "replay")
    chosen = [d for d in snap.devices if simulated or d.info.uuid in used]
    first = {d.info.uuid: d for d in before.devices}
    total: dict[str, float] = {}
    for d in chosen:
        for key, value in _delta(d, first.get(d.info.uuid)).items():
            total[key] = total.get(key, 0.0) + value
    intensity = snap.intensity
    return Measurement(
        command=list(command),
        exit_code=code,
        seconds=seconds,
        gpus=[d.info.uuid for d in chosen],
        energy_joules=total.get("energy", 0.0),
        class_seconds={c.value: total.get(f"class_s:{c.value}", 0.0) for c in BottleneckClass},
        class_joules={c.value: total.get(f"class_j:{c.value}", 0.0) for c in BottleneckClass},
        idle_joules=total.get("idle", 0.0),
        operational_grams=total.get("op", 0.0),
        embodied_grams=total.get("emb", 0.0),
        energy_cost=total.get("ecost", 0.0),
        rental_cost=total.get("rcost", 0.0),
        currency=chosen[0].costs.currency if chosen else "USD",
        intensity=intensity.grams_per_kwh if intensity else 0.0,
        intensity_source=intensity.source if intensity else "none",
        pue=pue,
    )


def report(m: Measurement, json_path: Path | None) -> None:
    data = m.as_json()
    if json_path is not None:
        json_path.write_text(json.dumps(data, indent=2) + "\n")
    mix = ", ".join(
        f"{c} {s:.0%}"
        for c, s in sorted(data["class_share"].items(), key=lambda kv: -kv[1])
        if s > 0
    )
    grams = m.operational_grams + m.embodied_grams
    lines = [
        f"greenops measure: {' '.join(m.command)} (exit {m.exit_code})",
        f"  duration   {m.seconds:.1f} s on {len(m.gpus)} GPU(s)",
        f"  energy     {m.energy_joules:.1f} J ({m.energy_joules / 3.6e6:.6f} kWh), "
        f"mean {data['mean_power_watts']:.1f} W",
        f"  class mix  {mix or '-'}",
        f"  waste      {data['waste_energy_joules']:.1f} J idle or overhead",
        f"  carbon     {m.operational_grams:.2f} g operational ({m.intensity:.0f} g/kWh from "
        f"{m.intensity_source}, PUE {m.pue:g}) + {m.embodied_grams:.2f} g embodied",
        f"  cost       {m.energy_cost + m.rental_cost:.4f} {m.currency} "
        f"(energy {m.energy_cost:.4f}, rental {m.rental_cost:.4f})",
        f"  that is    like driving {grams / CAR_GRAMS_PER_KM * 1000:.0f} m in an average car",
    ]
    print("\n".join(lines), file=sys.stderr)
