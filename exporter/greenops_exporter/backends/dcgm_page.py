"""dcgm-exporter's page -> the DeviceInfo and Reading that NVML would give (pure: text in).

dcgm-exporter writes one series per field and GPU, and under MIG one per field and GPU
instance (labels `GPU_I_ID`, `GPU_I_PROFILE`), repeating the GPU-wide fields (power, energy,
temperature, clocks) on every instance's series. Its units are not the exporter's: power
in W, energy in mJ, framebuffer in MiB, clocks in MHz, utilisation in percent, profiling
fields as ratios 0..1, and `DCGM_FI_PROF_PCIE_*_BYTES` as rates in bytes per second despite
the name. Whatever a page lacks is a capability the device lacks.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from greenops_exporter.backends.base import (
    Capability,
    DeviceInfo,
    GpmReading,
    MigReading,
    ProcessReading,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.dcgm_refusal import refusal
from greenops_exporter.facts.gpu_models import compute_slices, model_by_name, total_slices

MIB = 1024 * 1024

# A pod has no host PID here. Its processes get this base plus the CRC-32 of its identity:
# above Linux's largest possible PID (PID_MAX_LIMIT, 2**22), so never a real process's, and
# the same on every restart and replica, so series keep their identity.
SYNTHETIC_PID_BASE = 1 << 22

# profiling field -> GpmReading attribute (ratios, or bytes per second for the rates)
PROF_FIELDS: Mapping[str, str] = {
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
    "DCGM_FI_PROF_SM_OCCUPANCY": "sm_occupancy",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active",
    "DCGM_FI_PROF_PIPE_TENSOR_HMMA_ACTIVE": "hmma_tensor_active",
    "DCGM_FI_PROF_DRAM_ACTIVE": "dram_active",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": "fp64_active",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": "fp32_active",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": "fp16_active",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "graphics_active",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "pcie_tx_bytes_per_second",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "pcie_rx_bytes_per_second",
    "DCGM_FI_PROF_NVLINK_TX_BYTES": "nvlink_tx_bytes_per_second",
    "DCGM_FI_PROF_NVLINK_RX_BYTES": "nvlink_rx_bytes_per_second",
}
_RATES = {a for a in PROF_FIELDS.values() if a.endswith("_per_second")}
CLOCK_EVENT_FIELDS = ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
POWER_LIMIT_FIELDS = ("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "DCGM_FI_DEV_POWER_MGMT_LIMIT")

# capability -> the fields that give it (any one will do)
CAPABILITY_FIELDS: Mapping[Capability, tuple[str, ...]] = {
    Capability.POWER_AVERAGE: ("DCGM_FI_DEV_POWER_USAGE",),
    Capability.POWER_INSTANT: ("DCGM_FI_DEV_POWER_USAGE_INSTANT",),
    Capability.ENERGY_COUNTER: ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",),
    Capability.UTILIZATION: ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    Capability.MEMORY: ("DCGM_FI_DEV_FB_USED",),
    Capability.TEMPERATURE: ("DCGM_FI_DEV_GPU_TEMP",),
    Capability.CLOCKS: ("DCGM_FI_DEV_SM_CLOCK",),
    Capability.PSTATE: ("DCGM_FI_DEV_PSTATE",),
    Capability.CLOCK_EVENT_REASONS: CLOCK_EVENT_FIELDS,
    Capability.GPM: tuple(PROF_FIELDS),
    Capability.NVLINK_COUNTERS: ("DCGM_FI_PROF_NVLINK_TX_BYTES",),
}

# every field the mapping reads; the others (XID errors, remapped rows, encoder...) are
# dropped before parsing: client_python's parser costs about 0.08 ms a series
READ_FIELDS = frozenset(
    {n for names in CAPABILITY_FIELDS.values() for n in names}
    | set(POWER_LIMIT_FIELDS)
    | {
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_FB_RESERVED",
    }
)

_ARCHITECTURES = (
    ("B200", "blackwell"),
    ("GB200", "blackwell"),
    ("RTX PRO 6000", "blackwell"),
    ("H100", "hopper"),
    ("H200", "hopper"),
    ("H800", "hopper"),
    ("GH200", "hopper"),
    ("A100", "ampere"),
    ("A30", "ampere"),
    ("A10", "ampere"),
    ("A40", "ampere"),
    ("L40", "ada"),
    ("L4", "ada"),
    ("Ada", "ada"),
    ("T4", "turing"),
    ("V100", "volta"),
)

Key = tuple[str, int | None]  # (field, GPU instance or None for the whole GPU)
Pod = tuple[int | None, str, str, str]  # (GPU instance, namespace, pod, container)


class PageError(ValueError):
    """Not a dcgm-exporter page (HTML, garbage, another exporter's metrics)."""


@dataclass(frozen=True, slots=True)
class GpuPage:
    """Everything one GPU's series say: compared whole to tell a new sample from a cached one."""

    uuid: str
    index: int
    labels: Mapping[str, str]  # identity labels of its first series
    values: Mapping[Key, float | None] = field(default_factory=dict)  # NaN -> None
    profiles: Mapping[int, str] = field(default_factory=dict)  # GPU_I_ID -> GPU_I_PROFILE
    pods: frozenset[Pod] = frozenset()
    kubernetes: bool = False  # dcgm-exporter writes pod labels (its Kubernetes mapping is on)

    def fields(self) -> set[str]:
        return {name for name, _ in self.values}

    def value(self, name: str) -> float | None:
        """A GPU-wide field: its own series, else (under MIG, where every instance repeats
        it) the lowest instance's, the same series every time so that counters stay monotonic."""
        if (name, None) in self.values:
            return self.values[(name, None)]
        instances = sorted(gi for n, gi in self.values if n == name and gi is not None)
        return self.values[(name, instances[0])] if instances else None

    def first(self, names: tuple[str, ...]) -> float | None:
        return next((v for v in (self.value(n) for n in names) if v is not None), None)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _instance(labels: Mapping[str, str]) -> int | None:
    raw = labels.get("GPU_I_ID", "")
    return int(raw) if raw.isdigit() else None


def read_lines(text: str) -> str:
    """The page's lines for the fields in READ_FIELDS, with their HELP and TYPE."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#"):
            words = line.split(" ", 3)
            name = words[2] if len(words) > 2 else ""
        else:
            name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in READ_FIELDS or (name and not name.startswith("DCGM_FI_")):
            keep.append(line)  # a foreign name stays: garbage must fail as garbage
    return "\n".join(keep) + "\n"


def parse_page(text: str, kubernetes: bool | None = None) -> dict[str, GpuPage]:
    """The page's GPUs by UUID, in `gpu` label order; PageError when it is not a page.

    dcgm-exporter's Kubernetes mapping is one switch for the whole page: on, current
    exporters label only the GPUs a pod holds (older ones wrote empty labels on the others),
    so any series with a `pod` label means it is on for every GPU; `kubernetes` overrides."""
    values: dict[str, dict[Key, float | None]] = {}
    labels: dict[str, dict[str, str]] = {}
    profiles: dict[str, dict[int, str]] = {}
    pods: dict[str, set[Pod]] = {}
    mapped = False
    try:
        for family in text_string_to_metric_families(read_lines(text)):
            if not family.name.startswith("DCGM_FI_"):
                continue
            for sample in family.samples:
                uuid = sample.labels.get("UUID") or sample.labels.get("uuid")
                if not uuid:
                    continue
                gi = _instance(sample.labels)
                values.setdefault(uuid, {}).setdefault((family.name, gi), _number(sample.value))
                labels.setdefault(uuid, dict(sample.labels))
                if gi is not None:
                    profiles.setdefault(uuid, {})[gi] = sample.labels.get("GPU_I_PROFILE", "")
                if "pod" in sample.labels:
                    mapped = True
                    if sample.labels["pod"]:
                        pods.setdefault(uuid, set()).add(
                            (
                                gi,
                                sample.labels.get("namespace", ""),
                                sample.labels["pod"],
                                sample.labels.get("container", ""),
                            )
                        )
    except ValueError as exc:
        raise PageError(f"not a metrics page: {exc}") from exc
    if not values:
        raise PageError(refusal(text, READ_FIELDS))
    on = mapped if kubernetes is None else kubernetes
    gpus = [
        GpuPage(
            uuid=uuid,
            index=int(labels[uuid]["gpu"]) if labels[uuid].get("gpu", "").isdigit() else i,
            labels=labels[uuid],
            values=values[uuid],
            profiles=profiles.get(uuid, {}),
            pods=frozenset(pods.get(uuid, set())) if on else frozenset(),
            kubernetes=on,
        )
        for i, uuid in enumerate(values)
    ]
    return {g.uuid: g for g in sorted(gpus, key=lambda g: g.index)}


def capabilities(page: GpuPage) -> frozenset[Capability]:
    present = page.fields()
    caps = {cap for cap, names in CAPABILITY_FIELDS.items() if present & set(names)}
    if page.profiles:
        caps.add(Capability.MIG)
    if page.kubernetes:
        caps.add(Capability.PROCESSES)
    return frozenset(caps)


def _gpu_wide(page: GpuPage, name: str) -> float | None:
    """The whole GPU's own series only: under MIG an instance's framebuffer is not the GPU's."""
    return page.values.get((name, None)) if page.profiles else page.value(name)


def _memory_total(page: GpuPage) -> int | None:
    used, free = _gpu_wide(page, "DCGM_FI_DEV_FB_USED"), _gpu_wide(page, "DCGM_FI_DEV_FB_FREE")
    if used is not None and free is not None:
        return _mib(used + free + (_gpu_wide(page, "DCGM_FI_DEV_FB_RESERVED") or 0.0))
    if page.profiles:  # instances report only their own framebuffer, if anything
        model = model_by_name(page.labels.get("modelName", ""))
        return model.memory_bytes if model else None
    return None


def device_info(page: GpuPage) -> DeviceInfo:
    name = page.labels.get("modelName", "")
    model = model_by_name(name)
    architecture = model.architecture if model else "unknown"
    if model is None:
        architecture = next((a for key, a in _ARCHITECTURES if key in name), "unknown")
    return DeviceInfo(
        index=page.index,
        uuid=page.uuid,
        name=name,
        pci_bus_id=page.labels.get("pci_bus_id", ""),
        memory_total_bytes=_memory_total(page) or 0,
        power_limit_watts=page.first(POWER_LIMIT_FIELDS),
        architecture=architecture,
        mig_enabled=bool(page.profiles),
        driver_version=page.labels.get("DCGM_FI_DRIVER_VERSION", ""),
        capabilities=capabilities(page),
    )


def _instance_weights(page: GpuPage) -> dict[int, float]:
    """Each GPU instance's share of the whole GPU's SMs, from its profile's compute slices."""
    name = page.labels.get("modelName", "")
    total = total_slices(name)
    return {gi: compute_slices(profile) / total for gi, profile in page.profiles.items()}


def _whole_gpu(page: GpuPage, name: str, rate: bool) -> float | None:
    """The whole GPU's own series where the page has one (it describes the GPU; NVIDIA's
    docs show one beside the instances'), else the instances' as the whole GPU's: ratios
    weighted by each instance's share of the SMs (an idle remainder counts as idle), rates
    summed."""
    if not page.profiles or (name, None) in page.values:
        return page.values.get((name, None))
    weights = _instance_weights(page)
    found = [(gi, page.values[(name, gi)]) for gi in weights if (name, gi) in page.values]
    if not found or all(v is None for _, v in found):
        return None
    if rate:
        return sum(v or 0.0 for _, v in found)
    return min(sum(weights[gi] * (v or 0.0) for gi, v in found), 1.0)


def gpm(page: GpuPage) -> GpmReading | None:
    present = page.fields()
    if not present & set(PROF_FIELDS):
        return None
    return GpmReading(
        **{
            attr: _whole_gpu(page, name, attr in _RATES)
            for name, attr in PROF_FIELDS.items()
            if name in present
        }
    )


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _mib(value: float | None) -> int | None:
    return None if value is None else int(value * MIB)


def _memory_used(page: GpuPage) -> int | None:
    """Like NVML's `used`, which counts the driver's reservation (DCGM reports it apart)."""
    used = _gpu_wide(page, "DCGM_FI_DEV_FB_USED")
    if used is not None or not page.profiles:
        reserved = _gpu_wide(page, "DCGM_FI_DEV_FB_RESERVED") or 0.0
        return _mib(None if used is None else used + reserved)
    total = 0.0
    for gi in page.profiles:
        used = page.values.get(("DCGM_FI_DEV_FB_USED", gi))
        if used is None:
            return None  # an instance without framebuffer fields (H100, dcgm-exporter #512)
        total += used + (page.values.get(("DCGM_FI_DEV_FB_RESERVED", gi)) or 0.0)
    return _mib(total)


def mig_devices(page: GpuPage) -> tuple[MigReading, ...]:
    out = []
    for gi, profile in sorted(page.profiles.items()):
        used = page.values.get(("DCGM_FI_DEV_FB_USED", gi))
        free = page.values.get(("DCGM_FI_DEV_FB_FREE", gi))
        reserved = page.values.get(("DCGM_FI_DEV_FB_RESERVED", gi)) or 0.0
        total = None if used is None or free is None else used + free + reserved
        engine = page.values.get(("DCGM_FI_PROF_GR_ENGINE_ACTIVE", gi))
        active = page.values.get(("DCGM_FI_PROF_SM_ACTIVE", gi))
        if active is None:  # the share of time the instance ran a kernel: a fair split weight
            active = engine
        out.append(
            MigReading(
                gpu_instance_id=gi,
                compute_instance_id=0,  # dcgm-exporter does not label compute instances
                uuid="",  # nor write MIG device UUIDs
                profile=profile,
                memory_used_bytes=_mib(used),
                memory_total_bytes=_mib(total),
                sm_active=active,
                graphics_active=engine,
                dram_active=page.values.get(("DCGM_FI_PROF_DRAM_ACTIVE", gi)),
                tensor_active=page.values.get(("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gi)),
            )
        )
    return tuple(out)


def synthetic_pid(pod: Pod) -> int:
    gi, namespace, name, container = pod
    identity = f"{namespace}/{name}/{container}/{'' if gi is None else gi}"
    return SYNTHETIC_PID_BASE + zlib.crc32(identity.encode()) % (1 << 30)


def processes(page: GpuPage) -> tuple[ProcessReading, ...]:
    """One entry per pod container on the GPU (or on one of its instances). dcgm-exporter
    repeats the GPU's (instance's) framebuffer use on each sharing pod's series, so that
    memory is split evenly among them: the sum stays true, the split is a guess."""
    out = []
    for pod in sorted(page.pods, key=lambda p: (p[0] or 0, p[1:])):
        gi, namespace, name, container = pod
        sharing = sum(1 for other in page.pods if other[0] == gi)
        used = page.values.get(("DCGM_FI_DEV_FB_USED", gi))
        out.append(
            ProcessReading(
                pid=synthetic_pid(pod),
                used_memory_bytes=None if used is None else int(used * MIB / sharing),
                command=container,
                gpu_instance_id=gi,
                container=container,
                pod=name,
                namespace=namespace,
            )
        )
    return tuple(out)


def reading(page: GpuPage, timestamp: float, plan: ReadPlan) -> Reading:
    """The GPU's values now. The energy counter comes with every reading whatever the plan
    says: the plan spares NVML's 4 ms call, and here the page has already paid for it."""
    v = page.value
    # under MIG only the whole GPU's own series: instances' read 0, unsupported (#216)
    utilization = _scaled(_gpu_wide(page, "DCGM_FI_DEV_GPU_UTIL"), 0.01)
    if utilization is None:  # absent under MIG (#105, #430): the share of time a kernel ran
        utilization = _whole_gpu(page, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", rate=False)
    reasons = page.first(CLOCK_EVENT_FIELDS)
    pstate = v("DCGM_FI_DEV_PSTATE")
    return Reading(
        timestamp=timestamp,
        power_watts=v("DCGM_FI_DEV_POWER_USAGE"),
        power_instant_watts=v("DCGM_FI_DEV_POWER_USAGE_INSTANT"),
        energy_counter_joules=_scaled(v("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"), 0.001),
        utilization_gpu=utilization,
        utilization_memory=_scaled(_gpu_wide(page, "DCGM_FI_DEV_MEM_COPY_UTIL"), 0.01),
        memory_used_bytes=_memory_used(page),
        memory_total_bytes=_memory_total(page),
        temperature_celsius=v("DCGM_FI_DEV_GPU_TEMP"),
        sm_clock_hertz=_scaled(v("DCGM_FI_DEV_SM_CLOCK"), 1e6),
        memory_clock_hertz=_scaled(v("DCGM_FI_DEV_MEM_CLOCK"), 1e6),
        pstate=None if pstate is None else int(pstate),
        clock_event_reasons=None if reasons is None else int(reasons),
        gpm=gpm(page) if plan.gpm else None,
        processes=processes(page) if plan.processes else (),
        mig_devices=mig_devices(page) if plan.mig else (),
    )
