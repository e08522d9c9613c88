"""`measure`: the energy, carbon and cost of one command's run, GPU, CPU and DRAM.

It runs the command while collecting and reports the GPUs it used and, at CodeCarbon's
scope, the node's CPU packages and DRAM over the run.

Each part says where its number comes from (the GPU's energy source; `counter` or
`estimate` for the host; `unavailable` when nothing measures it), so a part that could not
be read is never reported as 0 kWh. The JSON is a stable contract: keys are added, never
renamed; the keys that predate host energy keep their GPU-only meaning. A stop signal
(a CI job's timeout) still gives the report of what ran, marked interrupted (interrupt.py).
GPUs of the sim or replay backend are not this machine's: every output names them
`simulated` or `replayed` (`gpu_kind`), so a demo run never reads as a measurement.
"""

from __future__ import annotations

import errno
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.energy import EnergySource
from greenops_exporter.backends.base import Backend
from greenops_exporter.collect import Collector, CollectSettings, DeviceSnapshot, Snapshot
from greenops_exporter.collect.snapshot import HostSnapshot
from greenops_exporter.commands.interrupt import Job, on_stop_signals, signal_name
from greenops_exporter.commands.measure_usage import Usage
from greenops_exporter.config.errors import Interrupted, UsageError
from greenops_exporter.sources.carbon_intensity import CarbonChain

# UK government GHG conversion factors: an average car of unknown fuel, about 0.17 kgCO2e/km
CAR_GRAMS_PER_KM = 170.0
HOST_PARTS = (("cpu", "package"), ("dram", "dram"))  # measure's part -> RAPL zone
# the least exact source among several GPUs is the one reported
_GPU_SOURCES = [s.value for s in EnergySource if s is not EnergySource.NONE]


class CommandNotRun(Exception):
    """The command could not be started; exits as a shell would: 127 when it is not found,
    126 when it is found but cannot be run (not executable, not a program)."""

    def __init__(self, command: Sequence[str], error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot run {shlex.join(command)}: {reason}")
        self.exit_code = 127 if error.errno == errno.ENOENT else 126


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Part:
    """One part's energy over the run: None throughout when nothing measures it."""

    source: str  # counter | instant_power | average_power (GPU) | estimate | unavailable
    energy_joules: float | None = None
    mean_power_watts: float | None = None
    operational_grams: float | None = None
    energy_cost: float | None = None
    why: str = ""  # why it is unavailable, for the report (not in the JSON)

    def as_json(self) -> dict[str, Any]:
        return {
            "energy_joules": _round(self.energy_joules, 3),
            "source": self.source,
            "mean_power_watts": _round(self.mean_power_watts, 3),
            "carbon_grams_operational": _round(self.operational_grams, 4),
            "cost_energy": _round(self.energy_cost, 6),
        }


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
    zone: str = ""
    parts: Mapping[str, Part] = field(default_factory=dict)  # gpu, cpu, dram
    interrupted: str | None = None  # the stop signal measure got (SIGTERM, SIGINT, SIGHUP)
    backend: str = ""
    gpu_names: list[str] = field(default_factory=list)  # the GPUs' model names, in order
    usage: Usage | None = None

    @property
    def gpu_kind(self) -> str:
        """What the GPUs are: a simulated fleet's or a recording's are not this machine's,
        and every output says so ("" for real GPUs)."""
        return {"sim": "simulated", "replay": "replayed"}.get(self.backend, "")

    @property
    def exit_status(self) -> int:
        """What measure exits with: the command's exit code, or 128 + the number of the
        signal that interrupted measure, as a shell exits on it."""
        if self.interrupted is None:
            return self.exit_code
        return 128 + signal.Signals[self.interrupted].value

    @property
    def mean_power_all_gpus(self) -> float:
        """The GPUs' power together: `mean_power_watts` is per GPU (their energy over their
        summed seconds), which undersells a job on several GPUs by their number."""
        total = sum(self.class_seconds.values())
        return self.energy_joules / total * len(self.gpus) if total else 0.0

    @property
    def measured(self) -> list[Part]:
        return [p for p in self.parts.values() if p.energy_joules is not None]

    def as_json(self) -> dict[str, Any]:
        """The stable `measure --json` contract: later releases add keys, never rename."""
        total = sum(self.class_seconds.values())
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            # since interruption: the signal that stopped measure (its command was sent it
            # and waited for), null when the command ran to its end
            "interrupted": self.interrupted,
            "duration_seconds": round(self.seconds, 3),
            "gpus": self.gpus,
            "energy_joules": round(self.energy_joules, 3),
            # per GPU, over the GPU's own clock (a replay at 10x covers ten times the wall time)
            "mean_power_watts": round(self.energy_joules / total, 3) if total else 0.0,
            "mean_power_watts_all_gpus": round(self.mean_power_all_gpus, 3),
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
                "host_energy": _round(self.host_sum("energy_cost"), 6),  # null: not measured
            },
            "equivalent_km_driven": round(
                (self.operational_grams + self.embodied_grams) / CAR_GRAMS_PER_KM, 4
            ),
            # since host energy: the node's parts and their totals (measured parts only)
            "zone": self.zone,
            "parts": {name: part.as_json() for name, part in self.parts.items()},
            # since interoperating with CodeCarbon: what the GPUs are ("simulated" on the
            # sim backend, "replayed" on replay, "" for real ones), their models, and the
            # run's mean utilisations (CodeCarbon's *_utilization_percent and ram_used_gb)
            "backend": self.backend,
            "simulated": self.backend == "sim",
            "gpu_kind": self.gpu_kind,
            "gpu_models": self.gpu_names,
            "usage": None if self.usage is None else self.usage.as_json(),
            "total_energy_joules": round(sum(p.energy_joules or 0.0 for p in self.measured), 3),
            "carbon_grams_operational_total": round(
                sum(p.operational_grams or 0.0 for p in self.measured), 4
            ),
        }

    def host_sum(self, attr: str) -> float | None:
        """A total over the measured CPU and DRAM parts; None when neither was measured, so
        that nothing shows a 0 that was never measured."""
        host = [p for name, p in self.parts.items() if name != "gpu"]
        values = [getattr(p, attr) or 0.0 for p in host if p.energy_joules is not None]
        return sum(values) if values else None


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


def host_part(
    zone: str, after: HostSnapshot | None, before: HostSnapshot | None, seconds: float
) -> Part:
    """The node's package (cpu) or dram energy between two snapshots."""
    now = after.energy(zone) if after is not None else None
    if now is None:
        return Part("unavailable", why=_why_unavailable(zone, after))
    joules, source = now
    then = before.energy(zone) if before is not None else None
    if then is not None:
        joules -= then[0]

    assert after is not None
    key = (zone, source)
    grams = after.carbon_grams.get(key, 0.0) - (
        before.carbon_grams.get(key, 0.0) if before else 0.0
    )
    cost = after.cost.get(key, 0.0) - (before.cost.get(key, 0.0) if before else 0.0)
    return Part(source, joules, joules / seconds if seconds > 0 else None, grams, cost)


def _why_unavailable(zone: str, host: HostSnapshot | None) -> str:
    if host is None:
        return "host energy not collected"
    capabilities = {u.capability for u in host.unsupported if u.zone in ("", zone)}
    if "rapl" in capabilities:
        return "no RAPL"
    if "rapl_energy" in capabilities:
        return "RAPL not readable"
    return "not read"


def gpu_source(devices: Sequence[DeviceSnapshot]) -> str:
    sources = {d.energy_source.value for d in devices} & set(_GPU_SOURCES)
    if not sources:
        return "unavailable"
    return max(sources, key=_GPU_SOURCES.index)


async def measure(
    command: Sequence[str],
    backend: Backend,
    reason: str,
    settings: CollectSettings,
    chain: CarbonChain,
    pue: float,
) -> Measurement:
    """Run the command while collecting; attribute the GPUs its process tree used (all of
    them on the sim and replay backends, whose processes are not real). The host's parts
    are the whole node's, as CodeCarbon's machine mode counts them."""
    collector = Collector(
        backend, replace(settings, energy_anchor_seconds=0.0), reason, carbon=chain
    )
    job = Job()
    with on_stop_signals(job.on_signal):
        for source in chain.sources:
            await source.poll_once()
        before = await collector.collect_once()
        if not before.backend_up:
            await collector.close()
            raise UsageError(f"cannot measure: backend {backend.name} is unavailable ({reason})")
        if job.interrupted is not None:  # nothing started, nothing to report
            await collector.close()
            raise Interrupted(job.interrupted, signal_name(job.interrupted))
        started = time.monotonic()
        usage = Usage()
        usage.start()
        try:
            await job.start(command)
        except OSError as exc:
            await collector.close()
            raise CommandNotRun(command, exc) from exc
        assert job.proc is not None
        used: set[str] = set()
        snap: Snapshot = before
        try:
            while True:
                code = await job.wait(settings.interval_seconds)
                snap = await collector.collect_once()
                usage.sample(snap.devices)
                pids = _tree(job.proc.pid)
                for d in snap.devices:
                    if d.reading is not None and any(p.pid in pids for p in d.reading.processes):
                        used.add(d.info.uuid)
                if code is not None:
                    break
        except BaseException:
            job.kill()  # measure failing must not leave its command running
            raise
        seconds = time.monotonic() - started
        usage.stop()
        await job.end()
    await collector.close()
    simulated = backend.name in ("sim", "replay")
    chosen = [d for d in snap.devices if simulated or d.info.uuid in used]
    first = {d.info.uuid: d for d in before.devices}
    total: dict[str, float] = {}
    for d in chosen:
        for key, value in _delta(d, first.get(d.info.uuid)).items():
            total[key] = total.get(key, 0.0) + value
    intensity = snap.intensity
    gpu_seconds = sum(total.get(f"class_s:{c.value}", 0.0) for c in BottleneckClass)
    gpu_from = gpu_source(chosen or snap.devices)
    gpu_joules = total.get("energy", 0.0)
    parts = {
        "gpu": Part("unavailable")
        if gpu_from == "unavailable"
        else Part(
            gpu_from,
            gpu_joules,
            gpu_joules / gpu_seconds if gpu_seconds > 0 else None,
            total.get("op", 0.0),
            total.get("ecost", 0.0),
        ),
        **{name: host_part(zone, snap.host, before.host, seconds) for name, zone in HOST_PARTS},
    }
    return Measurement(
        command=list(command),
        exit_code=code,
        seconds=seconds,
        gpus=[d.info.uuid for d in chosen],
        energy_joules=gpu_joules,
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
        zone=intensity.zone if intensity else "",
        parts=parts,
        interrupted=None if job.interrupted is None else signal_name(job.interrupted),
        backend=backend.name,
        gpu_names=[d.info.name for d in chosen],
        usage=usage,
    )
