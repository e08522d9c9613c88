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

from greenops_exporter.backends.base import Reading


class EnergySource(enum.StrEnum):
    COUNTER = "counter"
    POWER_SAMPLES = "power_samples"
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


def samples_energy(
    last: tuple[float, float] | None, samples: Sequence[tuple[float, float]]
) -> float:
    """Trapezoid over (seconds, watts) samples, joined to the last sample already counted."""
    joules = 0.0
    previous = last
    for sample in samples:
        if previous is not None and sample[0] > previous[0]:
            joules += (previous[1] + sample[1]) / 2.0 * (sample[0] - previous[0])
        previous = sample
    return max(joules, 0.0)


class EnergyMeter:
    """A device's exported energy counter: exact like NVML's, cheap like power samples.

    NVML's total-energy counter costs 4 ms of CPU per read on an H100; the driver's 50 Hz
    power samples cost under 0.1 ms a cycle. Between counter reads (anchors) the meter
    integrates the samples (else instant power, else averaged power). At each anchor it
    learns how far the exported total is from the counter's truth, and spreads that
    correction evenly over as long as the last interval between anchors took, instead of
    jumping or holding: a window that follows an anchor then carries only its share of
    the error, and the exported total never decreases. Spreading over the interval
    actually observed (not a configured one) keeps the meter right whatever the anchor
    cadence: every 30 s for NVML's dear counter, every cycle where dcgm-exporter's page
    carries the counter each time. Where two anchors are consecutive readings the
    correction belongs to exactly the cycle that just ended, so it is applied at once:
    the meter is then exact at every reading. A counter that goes backwards is a driver reset: that
    interval keeps its integrated estimate and the counter is re-anchored.

    The total starts at 0 when the exporter starts watching, like any Prometheus counter.
    """

    def __init__(self) -> None:
        self.total_joules = 0.0  # what is exported: monotonic
        self.source = EnergySource.NONE
        self.resets = 0
        self._target = 0.0  # where the total should stand, as of the last anchor's cycle
        self._pending = 0.0  # correction not yet applied (J, either sign)
        self._rate = 0.0  # correction applied per second
        self._at_once = False  # a correction left from consecutive anchors: apply it all
        self._anchor_counter: float | None = None
        self._anchor_time = 0.0
        self._previous: Reading | None = None
        self._last_sample: tuple[float, float] | None = None

    def _step(self, previous: Reading | None, reading: Reading) -> float:
        if reading.power_samples:
            joules = (
                0.0
                if self._last_sample is None
                else samples_energy(self._last_sample, reading.power_samples)
            )
            self._last_sample = reading.power_samples[-1]
            return joules
        if self._last_sample is not None:
            return 0.0  # no new sample this cycle: the next ones cover the span
        return 0.0 if previous is None else interval_energy(previous, reading)

    def update(self, reading: Reading) -> float:
        """Feed the next reading; returns the joules added to the exported total."""
        previous = self._previous
        self._previous = reading
        step = self._step(previous, reading)
        dt = 0.0 if previous is None else max(reading.timestamp - previous.timestamp, 0.0)
        counter = reading.energy_counter_joules
        if self._anchor_counter is None:
            self.source = (
                EnergySource.POWER_SAMPLES
                if self._last_sample is not None
                else EnergySource.INSTANT_POWER
                if reading.power_instant_watts is not None
                else EnergySource.AVERAGE_POWER
                if reading.power_watts is not None
                else EnergySource.NONE
            )
        # the correction learnt at the last anchor, a share per second; a step never
        # crosses zero, and once the correction is used up nothing more is added (until
        # the next anchor, however late it comes)
        if self._at_once:
            chunk = self._pending
        elif self._pending > 0:
            chunk = min(max(self._rate * dt, 0.0), self._pending)
        elif self._pending < 0:
            chunk = max(min(self._rate * dt, 0.0), self._pending)
        else:
            chunk = 0.0
        added = step + chunk
        if added < 0.0:  # a negative correction larger than this cycle's energy waits
            chunk, added = -step, 0.0
        self._pending -= chunk
        self.total_joules += added
        if counter is not None:
            self.source = EnergySource.COUNTER
            if self._anchor_counter is None:
                self._target = self.total_joules
            elif counter >= self._anchor_counter:
                self._target += counter - self._anchor_counter
            else:
                self.resets += 1
                self._target = self.total_joules + self._pending
            observed = reading.timestamp - self._anchor_time
            consecutive = previous is not None and previous.energy_counter_joules is not None
            self._anchor_counter, self._anchor_time = counter, reading.timestamp
            self._pending = self._target - self.total_joules
            spread = not consecutive and observed > 0
            self._rate = self._pending / observed if spread else 0.0
            if not spread:  # exact now, as far as this cycle's own energy allows a cut
                take = max(self._pending, -added)
                added += take
                self.total_joules += take
                self._pending -= take
                self._at_once = True
            else:
                self._at_once = False
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
