"""Carbon-aware commands: greenest-window, carbon-gate and regions (`measure` is in
measure.py)."""

from __future__ import annotations

import asyncio
import math
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from greenops_exporter.analysis.carbon import greenest_window, operational_grams
from greenops_exporter.config.errors import UsageError
from greenops_exporter.config.models import PUE_MAX, PUE_MIN
from greenops_exporter.sources.carbon_intensity import (
    STATIC,
    CarbonChain,
    CarbonReading,
    NoIntensity,
)
from greenops_exporter.sources.carbon_static import UnknownZone, parse_zone

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


def check_max_intensity(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(
            f"--max-intensity: {value:g} is outside the allowed range (0 or more gCO2e/kWh)"
        )
    return value


def check_pue(value: float) -> float:
    if not PUE_MIN <= value <= PUE_MAX:  # NaN fails too
        raise UsageError(
            f"--pue: {value:g} is outside the allowed range {PUE_MIN:.1f}-{PUE_MAX:.1f} "
            "(as carbon.pue)"
        )
    return value


async def poll_chain(chain: CarbonChain) -> CarbonReading:
    """Ask every live source once, then take the chain's answer (the table at worst)."""
    try:
        await asyncio.gather(*(s.poll_once() for s in chain.sources))
    finally:  # Ctrl-C too: no "Unclosed client session" after the one line it prints
        for s in chain.sources:
            await s.close()
    return chain.current()


def greenest(chain: CarbonChain, duration: timedelta, within: timedelta) -> int:
    """The forecast's own zone heads the answer: the zone of the source that made it."""
    try:
        reading = asyncio.run(poll_chain(chain))
    except NoIntensity as exc:
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 1
    source = chain.forecast_reading()
    now = datetime.now(UTC)
    best = None if source is None else greenest_window(source.forecast, now, duration, within)
    if source is None or best is None:
        print(
            f"no forecast covers a {_span(duration)} window within {_span(within)} "
            f"for zone {reading.now.zone} "
            f"(intensity now: {reading.now.grams_per_kwh:.0f} g/kWh from {reading.now.source}); "
            + _why_no_window(chain, source, now)
        )
        return 1
    wait = best.start - now
    zone = source.now.zone
    print(f"greenest {_span(duration)} window within {_span(within)} in {zone}:")
    print(f"  starts  {best.start.isoformat(timespec='minutes')} (in {_human(wait)})")
    print(f"  mean    {best.mean_grams_per_kwh:.0f} gCO2e/kWh")
    print(
        f"  saving  {best.saving_ratio:.0%} against starting now "
        f"({best.now_mean_grams_per_kwh:.0f} gCO2e/kWh)"
    )
    return 0


def _why_no_window(chain: CarbonChain, source: CarbonReading | None, now: datetime) -> str:
    """Why no window was found, in the terms a user acts on: a short forecast is not fixed by
    configuring the source that is already configured."""
    if source is not None:
        points = sorted(source.forecast, key=lambda p: p.start)
        step = points[-1].start - points[-2].start if len(points) > 1 else timedelta(minutes=30)
        ends = points[-1].start + step
        covered = max(ends - max(now, points[0].start), timedelta(0))
        return (
            f"the forecast of {source.now.source} is too short: it covers {_span(covered)} "
            f"from now (until {ends.isoformat(timespec='minutes')})"
        )
    if any(s.last_error or s.value is None for s in chain.sources):
        return f"{_outage(chain)}, so no forecast"
    if chain.sources:
        names = ", ".join(s.name for s in chain.sources)
        return f"the configured source(s) ({names}) gave no forecast for this zone"
    return "configure a live source with forecasts (carbon.sources)"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes:02d} min"


def _human(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def carbon_gate(chain: CarbonChain, max_intensity: float) -> int:
    try:
        reading = asyncio.run(poll_chain(chain)).now
    except NoIntensity as exc:
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 1
    verdict = reading.grams_per_kwh <= max_intensity
    print(
        f"grid intensity in {reading.zone}: {reading.grams_per_kwh:.0f} gCO2e/kWh "
        f"({reading.source}); limit {max_intensity:.0f}: "
        + ("green enough, go" if verdict else "too dirty, defer")
    )
    if chain.sources and chain.override is None and reading is chain.static:
        print(f"  {_outage(chain)}: the static table's figure for {reading.zone} decided")
    return 0 if verdict else GATE_EXIT


def _outage(chain: CarbonChain) -> str:
    """What the live sources said instead of a fresh value: in the command's own output,
    where a deferred or released job's log shows it, not only in a log line."""
    said = "; ".join(f"{s.name}: {s.last_error or 'no fresh value'}" for s in chain.sources)
    return f"no live source has a fresh value ({said})"


def regions(energy_kwh: float, names: Sequence[str] | None, pue: float) -> int:
    chosen = sorted(STATIC)  # world too: the fallback is a candidate like any other
    if names is not None and not all(names):  # `--regions ''` as `GB,,FR`: never all zones
        raise UsageError("--regions: an empty zone name; give zones separated by commas (GB,FR)")
    if names is not None:
        try:
            chosen = list(dict.fromkeys(parse_zone(n) for n in names))  # gb,GB: one row
        except UnknownZone as exc:
            raise UsageError(f"--regions: {exc}") from None
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
