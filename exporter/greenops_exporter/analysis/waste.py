"""Waste: energy burnt idle, memory held by idle work, activity below target.

Accumulators take readings and the energy the meter added, with the clock injected through
the readings' timestamps; nothing here reads a device or a file.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from greenops_exporter.analysis.bottleneck import engine_activity
from greenops_exporter.backends.base import ProcessReading, Reading


@dataclass(frozen=True, slots=True)
class WasteSettings:
    stranded_after_seconds: float = 600.0
    underutilization_target: float = 0.8
    underutilization_window_seconds: float = 300.0


def activity(reading: Reading) -> float | None:
    """SM activity where GPM offers it (the honest one), else engine activity or utilisation."""
    if reading.gpm is not None and reading.gpm.sm_active is not None:
        return reading.gpm.sm_active
    return engine_activity(reading)


def underutilization(mean_activity: float, target: float) -> float:
    """max(0, (target - activity) / target): 0 at or above target, 1 when nothing runs."""
    if target <= 0:
        return 0.0
    return max(0.0, (target - mean_activity) / target)


class ActivityWindow:
    """Time-weighted mean of activity over the last `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._spans: deque[tuple[float, float, float]] = deque()  # (end, length, value)
        self._weighted = 0.0
        self._length = 0.0

    def add(self, end: float, length: float, value: float) -> None:
        if length <= 0:
            return
        self._spans.append((end, length, value))
        self._weighted += length * value
        self._length += length
        while self._spans and self._spans[0][0] <= end - self.seconds:
            _, old_length, old_value = self._spans.popleft()
            self._weighted -= old_length * old_value
            self._length -= old_length

    def mean(self) -> float | None:
        if self._length <= 0:
            return None
        return min(max(self._weighted / self._length, 0.0), 1.0)


def holders(reading: Reading) -> tuple[ProcessReading, ...]:
    """Processes holding memory (a context at least) on the GPU; one whose memory is unknown
    (a pod on a dcgm-exporter page without framebuffer fields) still holds the GPU."""
    return tuple(
        p for p in reading.processes if p.used_memory_bytes is None or p.used_memory_bytes > 0
    )
