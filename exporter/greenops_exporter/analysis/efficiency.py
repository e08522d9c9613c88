"""Per-GPU efficiency accounting: class time and energy, idle energy by holder, stranded
memory, under-utilisation. One accumulator per GPU, fed once per collection cycle."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backends.base import ProcessReading, Reading
from .bottleneck import BottleneckClass, Signals, Thresholds, classify
from .traffic import TrafficMeter
from .waste import ActivityWindow, WasteSettings, activity, holders, underutilization


@dataclass
class Efficiency:
    thresholds: Thresholds = field(default_factory=Thresholds)
    waste: WasteSettings = field(default_factory=WasteSettings)
    traffic: TrafficMeter = field(default_factory=TrafficMeter)
    current: BottleneckClass | None = None
    signals: Signals | None = None
    class_seconds: dict[BottleneckClass, float] = field(
        default_factory=lambda: dict.fromkeys(BottleneckClass, 0.0)
    )
    class_joules: dict[BottleneckClass, float] = field(
        default_factory=lambda: dict.fromkeys(BottleneckClass, 0.0)
    )
    idle_joules_no_holder: float = 0.0
    idle_joules_with_holder: float = 0.0
    idle_since: float | None = None
    stranded: tuple[ProcessReading, ...] = ()
    underutilization_ratio: float | None = None
    _window: ActivityWindow | None = None
    _previous: Reading | None = None

    def update(self, reading: Reading, joules: float) -> None:
        """Account the interval that ended with `reading`, which cost `joules`."""
        previous, self._previous = self._previous, reading
        self.traffic.update(reading)
        cls, signals = classify(reading, self.traffic.bytes_per_second, self.thresholds)
        self.current, self.signals = cls, signals
        dt = 0.0 if previous is None else max(reading.timestamp - previous.timestamp, 0.0)
        self.class_seconds[cls] += dt
        self.class_joules[cls] += joules
        held = holders(reading)
        if cls is BottleneckClass.IDLE:
            if held:
                self.idle_joules_with_holder += joules
            else:
                self.idle_joules_no_holder += joules
            if self.idle_since is None:
                self.idle_since = reading.timestamp if previous is None else previous.timestamp
        else:
            self.idle_since = None
        idle_for = 0.0 if self.idle_since is None else reading.timestamp - self.idle_since
        self.stranded = held if idle_for >= self.waste.stranded_after_seconds else ()
        if self._window is None:
            self._window = ActivityWindow(self.waste.underutilization_window_seconds)
        value = activity(reading)
        if value is not None:
            self._window.add(reading.timestamp, dt, value)
        mean = self._window.mean()
        self.underutilization_ratio = (
            None if mean is None else underutilization(mean, self.waste.underutilization_target)
        )

    @property
    def stranded_bytes(self) -> int:
        return sum(p.used_memory_bytes or 0 for p in self.stranded)
