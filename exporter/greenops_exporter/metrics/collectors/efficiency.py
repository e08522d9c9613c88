"""The `efficiency` collector: the bottleneck class, its time and energy, waste, right-sizing
and advice."""

from __future__ import annotations

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    BOTTLENECK,
    BOTTLENECK_ENERGY,
    BOTTLENECK_SECONDS,
    BOTTLENECK_SIGNALS,
    IDLE_ENERGY,
    MIG_RIGHTSIZE,
    MIG_RIGHTSIZE_FREED,
    PROCESS_STRANDED_MEMORY,
    RECOMMENDATION,
    STRANDED_MEMORY,
    UNDERUTILIZATION,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
    w = d.waste
    if w.bottleneck is None:
        return
    for cls in BottleneckClass:
        out.add(BOTTLENECK_SECONDS, w.class_seconds.get(cls, 0.0), d, cls.value)
        out.add(BOTTLENECK_ENERGY, w.class_joules.get(cls, 0.0), d, cls.value)
    out.add(IDLE_ENERGY, w.idle_joules_no_holder, d, "none")
    out.add(IDLE_ENERGY, w.idle_joules_with_holder, d, "process")
    if not d.up:
        return  # no stale state presented as current
    for cls in BottleneckClass:
        out.add(BOTTLENECK, 1 if cls is w.bottleneck else 0, d, cls.value)
    if w.signals is not None:
        out.add(BOTTLENECK_SIGNALS, 1, d, w.signals.value)
    out.add(STRANDED_MEMORY, w.stranded_bytes, d)
    for p in w.stranded:
        out.add(
            PROCESS_STRANDED_MEMORY,
            p.used_memory_bytes,
            d,
            str(p.pid),
            p.command,
            p.namespace,
            p.pod,
            p.container,
        )
    out.add(UNDERUTILIZATION, w.underutilization_ratio, d)
    if w.right_size is not None:
        out.add(MIG_RIGHTSIZE, 1, d, w.right_size.profile)
        out.add(MIG_RIGHTSIZE_FREED, w.right_size.freed_ratio, d)
    if w.advice is not None:
        out.add(RECOMMENDATION, 1, d, w.advice.code, w.advice.text)
