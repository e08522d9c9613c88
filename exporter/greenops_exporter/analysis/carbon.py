"""Carbon and cost arithmetic, in the units the reports count.

- Operational carbon, grams = energy (kWh) x PUE x grid intensity (gCO2e/kWh), integrated
  every collection cycle with the intensity in force at that moment.
- Embodied carbon per the Green Software Foundation's SCI specification:
  M = TE x (TiR / EL) x (RR / ToR): total embodied emissions TE of the GPU, the share of its
  expected lifetime EL the time reserved TiR is, and the share of its resources RR/ToR
  reserved (a whole GPU: 1; shared among processes by the same split as energy).
- SCI = (E x I + M) / R per functional unit R (a request, a token).
- Cost = kWh x PUE x price per kWh + hours x rental price per hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from greenops_exporter.sources.readings import ForecastPoint

JOULES_PER_KWH = 3.6e6
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def operational_grams(joules: float, pue: float, grams_per_kwh: float) -> float:
    return joules / JOULES_PER_KWH * pue * grams_per_kwh


def embodied_grams(
    total_embodied_kg: float,
    lifetime_years: float,
    reserved_seconds: float,
    resource_share: float = 1.0,
) -> float:
    """M = TE x (TiR / EL) x (RR / ToR), in grams."""
    return (
        total_embodied_kg
        * 1000.0
        * (reserved_seconds / (lifetime_years * SECONDS_PER_YEAR))
        * resource_share
    )


def sci(operational_g: float, embodied_g: float, units: float) -> float | None:
    """(E x I + M) / R; None when no unit of work was done."""
    return (operational_g + embodied_g) / units if units > 0 else None


def energy_cost(joules: float, pue: float, price_per_kwh: float) -> float:
    return joules / JOULES_PER_KWH * pue * price_per_kwh


def rental_cost(seconds: float, price_per_hour: float) -> float:
    return seconds / 3600.0 * price_per_hour


@dataclass(frozen=True, slots=True)
class GreenestWindow:
    start: datetime
    mean_grams_per_kwh: float
    now_mean_grams_per_kwh: float  # the same length of window starting now

    @property
    def saving_ratio(self) -> float:
        if self.now_mean_grams_per_kwh <= 0:
            return 0.0
        return 1.0 - self.mean_grams_per_kwh / self.now_mean_grams_per_kwh


def _mean_over(
    points: Sequence[ForecastPoint], start: datetime, duration: timedelta
) -> float | None:
    """Time-weighted mean of a step series (each point holds until the next) over a span."""
    end = start + duration
    total = weighted = 0.0
    for i, p in enumerate(points):
        p_end = points[i + 1].start if i + 1 < len(points) else None
        if p_end is None:
            step = points[i].start - points[i - 1].start if i > 0 else timedelta(minutes=30)
            p_end = p.start + step
        lo, hi = max(p.start, start), min(p_end, end)
        seconds = (hi - lo).total_seconds()
        if seconds > 0:
            weighted += seconds * p.grams_per_kwh
            total += seconds
    if total < duration.total_seconds() * 0.999:
        return None  # the forecast does not cover the whole span
    return weighted / total


def greenest_window(
    points: Sequence[ForecastPoint], now: datetime, duration: timedelta, within: timedelta
) -> GreenestWindow | None:
    """The start (at a forecast point, or now) of the lowest-mean window of `duration` that
    ends within `within` from now."""
    points = sorted(points, key=lambda p: p.start)
    if not points:
        return None
    now_mean = _mean_over(points, max(now, points[0].start), duration)
    candidates = [now] + [p.start for p in points if now < p.start]
    best: tuple[float, datetime] | None = None
    for start in candidates:
        if start + duration > now + within:
            continue
        mean = _mean_over(points, max(start, points[0].start), duration)
        if mean is not None and (best is None or mean < best[0] - 1e-9):
            best = (mean, start)
    if best is None:
        return None
    return GreenestWindow(best[1], best[0], now_mean if now_mean is not None else best[0])
