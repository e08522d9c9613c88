"""Energy from readings: the live meter (anchor + integration) and offline windows.

Why the counter, and why interpolation: on the recorded H100 the total-energy counter
interpolated at a window's edges is within 0.7 % of every phase, integrating instant power
within 0.4 %, while integrating the ~1 s averaged power errs by up to 35 % on short phases.
So: counter first, instant power second, averaged power last.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ..backends.base import Reading


class EnergySource(enum.StrEnum):
    COUNTER = "counter"
    INSTANT_POWER = "instant_power"
    AVERAGE_POWER = "average_power"
    NONE = "none"


def interval_energy(previous: Reading, current: Reading) -> float:
    """Trapezoid of the best power signal between two readings, in joules (never negative)."""
    dt = current.timestamp - previous.timestamp
    if dt <= 0:
        return 0.0
    if previous.power_instant_watts is not None and current.power_instant_watts is not None:
        p0, p1 = previous.power_instant_watts, current.power_instant_watts
    elif previous.power_watts is not None and current.power_watts is not None:
        p0, p1 = previous.power_watts, current.power_watts
    else:
        return 0.0
    return max(0.0, (p0 + p1) / 2.0 * dt)


class EnergyMeter:
    """A device's exported energy counter: exact like NVML's, cheap like instant power.

    NVML's total-energy counter costs 3.9 ms of CPU per read on an H100, 90 % of a full read.
    The meter takes it only when a reading carries it (an anchor, every few seconds) and
    integrates instant power in between. At each anchor the estimate is re-based on the
    counter, so the error never accumulates past one anchor interval; the exported total is
    held (never lowered) if the integration ran ahead. A counter that goes backwards is a
    driver reset: that interval is integrated instead, and the counter re-anchored.

    The total starts at 0 when the exporter starts watching, like any Prometheus counter.
    """

    def __init__(self) -> None:
        self.total_joules = 0.0  # what is exported: monotonic
        self.source = EnergySource.NONE
        self.resets = 0
        self._estimate = 0.0  # best estimate of energy since start
        self._anchor_counter: float | None = None
        self._anchor_estimate = 0.0
        self._integrated_since_anchor = 0.0
        self._previous: Reading | None = None

    def update(self, reading: Reading) -> float:
        """Feed the next reading; returns the joules added to the exported total."""
        previous = self._previous
        self._previous = reading
        step = 0.0 if previous is None else interval_energy(previous, reading)
        counter = reading.energy_counter_joules
        if counter is not None:
            self.source = EnergySource.COUNTER
            if self._anchor_counter is None:
                self._anchor_estimate = self._estimate + step
            elif counter >= self._anchor_counter:
                self._anchor_estimate += counter - self._anchor_counter
            else:
                self.resets += 1
                self._anchor_estimate += self._integrated_since_anchor + step
            self._anchor_counter = counter
            self._integrated_since_anchor = 0.0
            self._estimate = self._anchor_estimate
        else:
            if self._anchor_counter is None:
                self.source = (
                    EnergySource.INSTANT_POWER
                    if reading.power_instant_watts is not None
                    else EnergySource.AVERAGE_POWER
                    if reading.power_watts is not None
                    else EnergySource.NONE
                )
            self._integrated_since_anchor += step
            self._estimate = self._anchor_estimate + self._integrated_since_anchor
        added = max(0.0, self._estimate - self.total_joules)
        self.total_joules += added
        return added


def cumulative_energy(readings: Sequence[Reading]) -> list[float]:
    """Energy since the first reading, at each reading: counter deltas where both ends have
    one and it did not go backwards, power integration elsewhere."""
    out = [0.0]
    for previous, current in itertools.pairwise(readings):
        c0, c1 = previous.energy_counter_joules, current.energy_counter_joules
        if c0 is not None and c1 is not None and c1 >= c0:
            step = c1 - c0
        else:
            step = interval_energy(previous, current)
        out.append(out[-1] + step)
    return out


def energy_source(readings: Sequence[Reading]) -> EnergySource:
    if any(r.energy_counter_joules is not None for r in readings):
        return EnergySource.COUNTER
    if any(r.power_instant_watts is not None for r in readings):
        return EnergySource.INSTANT_POWER
    if any(r.power_watts is not None for r in readings):
        return EnergySource.AVERAGE_POWER
    return EnergySource.NONE


@dataclass(frozen=True, slots=True)
class WindowEnergy:
    start: float
    end: float
    seconds: float
    energy_joules: float
    mean_power_watts: float


def interpolate(times: Sequence[float], values: Sequence[float], at: float) -> float:
    """Linear interpolation, clamped to the first and last value."""
    if at <= times[0]:
        return values[0]
    if at >= times[-1]:
        return values[-1]
    i = bisect.bisect_right(times, at)
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0)


def window_energy(
    times: Sequence[float], cumulative: Sequence[float], start: float, end: float
) -> WindowEnergy:
    """Energy between two moments from the cumulative series, interpolated at the edges."""
    start = max(start, times[0])
    end = min(end, times[-1])
    if end <= start:
        return WindowEnergy(start, max(end, start), 0.0, 0.0, 0.0)
    joules = interpolate(times, cumulative, end) - interpolate(times, cumulative, start)
    seconds = end - start
    return WindowEnergy(start, end, seconds, joules, joules / seconds)
