"""The `mig` collector: MIG instances, their memory, class and advice, the unallocated share."""

from __future__ import annotations

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    MIG_BOTTLENECK,
    MIG_BOTTLENECK_SECONDS,
    MIG_INFO,
    MIG_MEMORY_TOTAL,
    MIG_MEMORY_USED,
    MIG_RECOMMENDATION,
    MIG_UNALLOCATED,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
    w = d.waste
    for (instance, profile, cls), seconds in w.instance_seconds.items():
        out.add(MIG_BOTTLENECK_SECONDS, seconds, d, str(instance), profile, cls.value)
    if d.reading is None or not d.up:
        return
    out.add(MIG_UNALLOCATED, w.mig_unallocated_ratio, d)
    for v in w.instances:
        for cls in BottleneckClass:
            out.add(
                MIG_BOTTLENECK,
                1 if cls is v.bottleneck else 0,
                d,
                str(v.gpu_instance_id),
                v.profile,
                cls.value,
            )
        out.add(
            MIG_RECOMMENDATION,
            1,
            d,
            str(v.gpu_instance_id),
            v.profile,
            v.advice.code,
            v.advice.text,
        )
    for m in d.reading.mig_devices:
        gi, ci = str(m.gpu_instance_id), str(m.compute_instance_id)
        out.add(MIG_INFO, 1, d, gi, ci, m.profile, m.uuid)
        out.add(MIG_MEMORY_USED, m.memory_used_bytes, d, gi, ci, m.profile)
        out.add(MIG_MEMORY_TOTAL, m.memory_total_bytes, d, gi, ci, m.profile)
