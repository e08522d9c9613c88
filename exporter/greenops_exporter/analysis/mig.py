"""A MIG GPU judged instance by instance, and the share of it that no instance holds.

The whole GPU's activity under MIG is its instances' weighted by their slices, so a
saturated instance beside unallocated slices reads as a half-busy GPU: "launch-bound, batch
more" would be wrong for the instance and blind to the real waste, capacity nobody can use.
So each instance gets its own class and advice from its own ratios, and the slices in no
instance get their own figure and line.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenops_exporter.analysis.bottleneck import (
    BottleneckClass,
    Thresholds,
    classify,
    engine_activity,
)
from greenops_exporter.analysis.rightsizing import Advice, advise
from greenops_exporter.backends.base import GpmReading, MigReading, Reading
from greenops_exporter.facts.gpu_models import compute_slices, total_slices


@dataclass(frozen=True, slots=True)
class InstanceVerdict:
    gpu_instance_id: int
    profile: str
    bottleneck: BottleneckClass
    advice: Advice


def instance_reading(m: MigReading, timestamp: float) -> Reading:
    """The instance as a reading of its own: engine activity (or the SM activity the source
    gives, a lower bound of it) as utilisation, its DRAM and tensor activity; none of the
    GPU-wide values, which are not the instance's."""
    engine = m.graphics_active if m.graphics_active is not None else m.sm_active
    gpm = GpmReading(
        graphics_active=engine, dram_active=m.dram_active, tensor_active=m.tensor_active
    )
    return Reading(timestamp=timestamp, utilization_gpu=engine, gpm=gpm)


# the nvml backend reads no GPM per instance; dcgm-exporter pages may lack the fields
NO_INSTANCE_ACTIVITY = (
    "no activity data for this GPU instance (the source gives none per instance): no class "
    "asserted; on dcgm-exporter add DCGM_FI_PROF_GR_ENGINE_ACTIVE to its field list"
)


def judge_instances(reading: Reading, t: Thresholds) -> tuple[InstanceVerdict, ...]:
    """Each instance's class and advice over the last interval (PCIe is not per instance)."""
    out = []
    for m in reading.mig_devices:
        cls, _ = classify(instance_reading(m, reading.timestamp), None, t)
        held = any(p.gpu_instance_id == m.gpu_instance_id for p in reading.processes)
        advice = advise({cls: 1.0}, 0, 1.0 if held else 0.0, None, None, NO_INSTANCE_ACTIVITY)
        out.append(InstanceVerdict(m.gpu_instance_id, m.profile, cls, advice))
    return tuple(out)


# whole-GPU and instance ratios are sampled a moment apart: a GPU this much busier than
# its listed instances could make it is still consistent with them
SAMPLING_SLACK = 0.01


def unallocated_share(model_name: str, reading: Reading) -> float | None:
    """Share of a MIG GPU's compute slices in no GPU instance; None when it is not in MIG
    mode (no instance on the reading), or when the source does not list every instance: a
    whole GPU busier than its listed instances could make it (NVIDIA's docs sample: 99.6 %
    with one 1g.5gb instance shown) has others the page does not show."""
    if not reading.mig_devices:
        return None
    total = total_slices(model_name)
    # one GPU instance may hold several compute instances: count its slices once
    used = {m.gpu_instance_id: compute_slices(m.profile) for m in reading.mig_devices}
    allocated = min(sum(used.values()) / total, 1.0)
    whole = engine_activity(reading)
    if whole is not None and whole > allocated + SAMPLING_SLACK:
        return None
    return 1.0 - allocated


def unallocated_advice(share: float, model_name: str) -> Advice:
    total = total_slices(model_name)
    free = round(share * total)
    return Advice(
        "allocate_idle_mig_capacity",
        f"{share:.0%} of this GPU ({free} of {total} compute slices) is in no MIG instance: "
        "capacity nobody can use; create an instance there or reconfigure the GPU's profiles",
    )
