"""Per-GPU efficiency accounting: class time and energy, idle energy by holder, stranded
memory, under-utilisation. One accumulator per GPU, fed once per collection cycle."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from greenops_exporter.analysis.bottleneck import BottleneckClass, Signals, Thresholds, classify
from greenops_exporter.analysis.mig import (
    InstanceVerdict,
    judge_instances,
    unallocated_advice,
    unallocated_share,
)
from greenops_exporter.analysis.rightsizing import (
    BUSY_CLASSES,
    NO_ACTIVITY_ADVICE,
    Advice,
    RightSize,
    WindowPeak,
    advise,
    smallest_profile,
    work_memory,
)
from greenops_exporter.analysis.traffic import TrafficMeter
from greenops_exporter.analysis.waste import (
    ActivityWindow,
    WasteSettings,
    activity,
    holders,
    underutilization,
)
from greenops_exporter.backends.base import ProcessReading, Reading
from greenops_exporter.facts.gpu_models import GpuModel


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
    model: GpuModel | None = None
    advice_window_seconds: float = 3600.0
    right_size: RightSize | None = None
    advice: Advice | None = None
    no_activity_advice: str = NO_ACTIVITY_ADVICE  # what to do where no activity is reported
    device_name: str = ""  # the GPU's model name: its MIG slices
    instances: tuple[InstanceVerdict, ...] = ()  # under MIG: each instance's class and advice
    instance_seconds: dict[tuple[int, str, BottleneckClass], float] = field(default_factory=dict)
    mig_unallocated_ratio: float | None = None
    _window: ActivityWindow | None = None
    _previous: Reading | None = None
    _mix: deque[tuple[float, BottleneckClass, float, bool]] = field(default_factory=deque)
    _mix_seconds: dict[BottleneckClass, float] = field(
        default_factory=lambda: dict.fromkeys(BottleneckClass, 0.0)
    )
    _mix_idle_held: float = 0.0
    _peak_memory: WindowPeak | None = None
    _peak_activity: WindowPeak | None = None

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
        self._judge_instances(reading, dt)
        self._advise(reading, cls, dt, bool(held), value)

    def _judge_instances(self, reading: Reading, dt: float) -> None:
        self.instances = judge_instances(reading, self.thresholds)
        for v in self.instances:
            key = (v.gpu_instance_id, v.profile, v.bottleneck)
            self.instance_seconds[key] = self.instance_seconds.get(key, 0.0) + dt
        self.mig_unallocated_ratio = unallocated_share(self.device_name, reading)

    def _advise(
        self, reading: Reading, cls: BottleneckClass, dt: float, held: bool, value: float | None
    ) -> None:
        """Right-size and advise from the last `advice_window_seconds` of work."""
        now = reading.timestamp
        self._mix.append((now, cls, dt, held))
        self._mix_seconds[cls] += dt
        if cls is BottleneckClass.IDLE and held:
            self._mix_idle_held += dt
        while self._mix and self._mix[0][0] < now - self.advice_window_seconds:
            _, old_cls, old_dt, old_held = self._mix.popleft()
            self._mix_seconds[old_cls] -= old_dt
            if old_cls is BottleneckClass.IDLE and old_held:
                self._mix_idle_held -= old_dt
        if self._peak_memory is None or self._peak_activity is None:
            self._peak_memory = WindowPeak(self.advice_window_seconds)
            self._peak_activity = WindowPeak(self.advice_window_seconds)
        memory = work_memory(reading)  # an unknown sample makes the window's peak unknown
        self._peak_memory.add(now, math.inf if memory is None else float(memory))
        self._peak_activity.add(now, math.inf if value is None else value)
        self.right_size = self._right_size(reading)
        share = self.class_share()
        if cls is BottleneckClass.UNKNOWN and not any(share.values()):
            share = {BottleneckClass.UNKNOWN: 1.0}  # the first reading: nothing else known
        idle_seconds = self._mix_seconds[BottleneckClass.IDLE]
        self.advice = advise(
            share,
            self.stranded_bytes,
            self._mix_idle_held / idle_seconds if idle_seconds > 0 else 0.0,
            self.underutilization_ratio,
            self.right_size,
            self.no_activity_advice,
        )
        unheld = self.mig_unallocated_ratio
        if unheld and self.advice.code not in ("release_idle_allocation", "add_activity_data"):
            # the GPU-wide class mixes in slices nobody can use: that is the waste to name
            self.advice = unallocated_advice(unheld, self.device_name)

    def _right_size(self, reading: Reading) -> RightSize | None:
        """Only from observed work and known memory: a GPU that did nothing, or whose work's
        memory is unknown at some point of the window, fits no slice anyone can name."""
        assert self._peak_memory is not None and self._peak_activity is not None
        worked = any(self._mix_seconds[c] > 0 for c in BUSY_CLASSES)
        memory, value = self._peak_memory.peak(), self._peak_activity.peak()
        if reading.mig_devices or not worked or memory is None or value is None:
            return None
        if math.isinf(memory) or math.isinf(value):
            return None
        return smallest_profile(self.model, memory, value)

    def class_share(self) -> dict[BottleneckClass, float]:
        """Share of the advice window's time in each class."""
        total = sum(self._mix_seconds.values())
        if total <= 0:
            return dict.fromkeys(BottleneckClass, 0.0)
        return {c: max(v, 0.0) / total for c, v in self._mix_seconds.items()}

    @property
    def stranded_bytes(self) -> int:
        return sum(p.used_memory_bytes or 0 for p in self.stranded)
