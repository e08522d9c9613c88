"""MIG right-sizing and plain-language advice, from what a GPU did over a window.

The smallest MIG profile that would have held the work is the one whose memory covers the
window's peak memory and whose share of the SMs (compute slices / 7) covers its peak SM
activity, each with 10 % headroom. The advice is drawn from the class mix and the waste.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.backends.base import Reading
from greenops_exporter.facts.gpu_models import GpuModel

HEADROOM = 1.1
BUSY_CLASSES = (
    BottleneckClass.COMPUTE,
    BottleneckClass.MEMORY,
    BottleneckClass.IO,
    BottleneckClass.OVERHEAD,
)
NO_ACTIVITY_ADVICE = (
    "no activity data: this GPU reports no utilisation, so no class, idle waste or right-sizing"
)


@dataclass(frozen=True, slots=True)
class RightSize:
    profile: str
    freed_ratio: float  # share of the GPU's compute slices the work would not need


def smallest_profile(
    model: GpuModel | None, peak_memory_bytes: float, peak_activity: float
) -> RightSize | None:
    """None when the model has no MIG or nothing smaller than the whole GPU would do."""
    if model is None or not model.mig_profiles:
        return None
    fitting = [
        p
        for p in model.mig_profiles
        if p.memory_bytes >= peak_memory_bytes * HEADROOM
        and p.compute_slices / 7 >= min(peak_activity * HEADROOM, 1.0)
    ]
    if not fitting:
        return None
    best = min(fitting, key=lambda p: (p.compute_slices, p.memory_bytes))
    if best.compute_slices >= 7:
        return None
    return RightSize(best.name, 1.0 - best.compute_slices / 7)


def work_memory(reading: Reading) -> int | None:
    """The memory the work holds: its processes' where every one is known, else (no process
    listed) the GPU's used memory, the driver's reservation included; None when unknown."""
    if reading.processes:
        used = [p.used_memory_bytes for p in reading.processes]
        return None if any(u is None for u in used) else sum(u or 0 for u in used)
    return reading.memory_used_bytes


class WindowPeak:
    """Maximum over a sliding time window (a monotonic deque: O(1) per sample)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        while self._q and self._q[-1][1] <= value:
            self._q.pop()
        self._q.append((t, value))
        while self._q[0][0] < t - self.seconds:
            self._q.popleft()

    def peak(self) -> float | None:
        return self._q[0][1] if self._q else None


@dataclass(frozen=True, slots=True)
class Advice:
    code: str
    text: str


def advise(
    class_share: Mapping[BottleneckClass, float],
    stranded_bytes: int,
    idle_with_holder_share: float,
    underutilization: float | None,
    right_size: RightSize | None,
    no_activity_advice: str = NO_ACTIVITY_ADVICE,
) -> Advice:
    """One recommendation, the most valuable first; none drawn from a class mix that is
    mostly unknown (no verdict without data)."""
    if class_share.get(BottleneckClass.UNKNOWN, 0.0) >= 0.5:
        return Advice("add_activity_data", no_activity_advice)
    if stranded_bytes > 0:
        return Advice(
            "release_idle_allocation",
            f"{stranded_bytes / 2**30:.1f} GiB held on an idle GPU: end the idle process "
            "(notebook, stopped job) or scale its pod to zero",
        )
    idle = class_share.get(BottleneckClass.IDLE, 0.0)
    if idle >= 0.5 and idle_with_holder_share >= 0.5:
        return Advice(
            "release_idle_allocation",
            "idle most of the time while a process holds it: release the GPU between jobs",
        )
    busy: dict[BottleneckClass, float] = {c: s for c, s in class_share.items() if c in BUSY_CLASSES}
    top = max(busy, key=lambda c: busy[c]) if busy and max(busy.values()) > 0 else None
    slice_hint = f", or run it on a MIG {right_size.profile} slice" if right_size else ""
    if top is BottleneckClass.OVERHEAD and busy[BottleneckClass.OVERHEAD] >= idle:
        return Advice(
            "batch_or_fuse",
            "launch- or host-bound: batch more requests, fuse kernels or capture CUDA graphs"
            + slice_hint,
        )
    if right_size is not None and (underutilization or 0.0) >= 0.5:
        return Advice(
            "use_smaller_slice",
            f"the work fits a MIG {right_size.profile} slice: use it and free "
            f"{right_size.freed_ratio:.0%} of the GPU",
        )
    if idle >= 0.5:
        return Advice("consolidate", "idle most of the time: consolidate work onto fewer GPUs")
    if top is None:
        return Advice("none", "no work seen yet")
    return {
        BottleneckClass.OVERHEAD: Advice(
            "batch_or_fuse",
            "launch- or host-bound: batch more requests, fuse kernels or capture CUDA graphs",
        ),
        BottleneckClass.MEMORY: Advice(
            "raise_arithmetic_intensity",
            "memory-bound: lower precision, fused kernels or larger batches do more per byte",
        ),
        BottleneckClass.IO: Advice(
            "overlap_transfers",
            "PCIe-bound: keep data on the GPU, pin host memory and overlap copies with compute",
        ),
        BottleneckClass.COMPUTE: Advice(
            "shift_deferrable_work",
            "compute-bound and well used: move deferrable runs to a greener hour",
        ),
    }[top]
