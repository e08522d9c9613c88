"""Snapshot -> series: which metrics each collector renders from one immutable Snapshot.

Families are built from the collection loop's last Snapshot, never from NVML. Collectors
are named and switchable (node_exporter's pattern): each reports its own success and
duration, and one that fails never fails the scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..analysis.bottleneck import BottleneckClass
from ..backends.base import Capability
from ..collect.snapshot import DeviceSnapshot, Snapshot
from .accounts import render_carbon, render_inference
from .host import render_host
from .names import (
    BOTTLENECK,
    BOTTLENECK_ENERGY,
    BOTTLENECK_SECONDS,
    BOTTLENECK_SIGNALS,
    CLOCK,
    CLOCK_EVENT,
    CLOCK_EVENT_REASONS,
    COLLECTOR_NAMES,
    DRAM_ACTIVE,
    ENERGY,
    ENERGY_RESETS,
    ENERGY_SOURCE,
    GPM_NVLINK_RATE,
    GPM_PCIE_RATE,
    GPU_INFO,
    GPU_UNSUPPORTED,
    GPU_UP,
    IDLE_ENERGY,
    MEMORY_TOTAL,
    MEMORY_USED,
    MEMORY_UTILIZATION,
    MIG_BOTTLENECK,
    MIG_BOTTLENECK_SECONDS,
    MIG_INFO,
    MIG_MEMORY_TOTAL,
    MIG_MEMORY_USED,
    MIG_RECOMMENDATION,
    MIG_RIGHTSIZE,
    MIG_RIGHTSIZE_FREED,
    MIG_UNALLOCATED,
    NVLINK_BYTES,
    PCIE_BYTES,
    PIPE_ACTIVE,
    PIPES,
    POD_ENERGY,
    POWER,
    POWER_INSTANT,
    POWER_LIMIT,
    PROCESS_ENERGY,
    PROCESS_MEMORY,
    PROCESS_SM,
    PROCESS_STRANDED_MEMORY,
    PSTATE,
    RECOMMENDATION,
    SM_ACTIVE,
    SM_OCCUPANCY,
    STRANDED_MEMORY,
    TEMPERATURE,
    TENSOR_ACTIVE,
    UNDERUTILIZATION,
    UTILIZATION,
)
from .names_self import (
    BACKEND_ERRORS,
    BACKEND_INFO,
    BACKEND_UP,
    BUILD_INFO,
    COLLECTION_CYCLES,
    COLLECTION_DURATION,
    COLLECTION_LAST,
    COLLECTION_SKIPPED,
    COLLECTOR_ERRORS,
    GPU_LAST_SUCCESS,
    GPU_READ_DURATION,
    SCRAPE_COLLECTOR_DURATION,
    SCRAPE_COLLECTOR_SUCCESS,
    SOURCE_AGE,
    SOURCE_ERRORS,
    SOURCE_UP,
)
from .spec import MetricSpec

log = logging.getLogger(__name__)

Labels = tuple[str, ...]


@dataclass(slots=True)
class Family:
    spec: MetricSpec
    label_names: Labels
    series: list[tuple[Labels, float]] = field(default_factory=list)


class Families:
    """Series of one render, grouped by metric in order of first appearance; the per-GPU
    label prefix (hostname, gpu, uuid; hostname alone on per-node series) is added in this
    one place."""

    def __init__(self, hostname: str | None) -> None:
        self.hostname = hostname
        self.by_name: dict[str, Family] = {}
        self._gpu_labels: dict[int, Labels] = {}  # by device index: built once a render

    def add(
        self,
        spec: MetricSpec,
        value: float | None,
        device: DeviceSnapshot | None = None,
        *labels: str,
    ) -> None:
        if value is None:
            return
        family = self.by_name.get(spec.name)
        if family is None:
            family = self.by_name[spec.name] = Family(spec, spec.label_names(self.hostname))
        if spec.gpu:
            assert device is not None
            index = device.info.index
            prefix = self._gpu_labels.get(index)
            if prefix is None:
                prefix = self._gpu_labels[index] = self._device_labels(device)
            labels = prefix + labels
        elif spec.node and self.hostname is not None:
            labels = (self.hostname, *labels)
        family.series.append((labels, float(value)))

    def _device_labels(self, device: DeviceSnapshot) -> Labels:
        info = device.info
        if self.hostname is not None:
            return (self.hostname, str(info.index), info.uuid)
        return (str(info.index), info.uuid)


def _render_gpu(out: Families, d: DeviceSnapshot) -> None:
    info = d.info
    out.add(
        GPU_INFO,
        1,
        d,
        info.name,
        info.pci_bus_id,
        info.driver_version,
        info.architecture,
        "enabled" if info.mig_enabled else "disabled",
    )
    out.add(GPU_UP, 1 if d.up else 0, d)
    for capability in Capability:
        if not info.supports(capability):
            out.add(GPU_UNSUPPORTED, 1, d, capability.value)
    out.add(POWER_LIMIT, info.power_limit_watts, d)
    if d.energy_source.value != "none":
        out.add(ENERGY, d.energy_joules_total, d)
        out.add(ENERGY_SOURCE, 1, d, d.energy_source.value)
    out.add(ENERGY_RESETS, d.energy_counter_resets, d)
    r = d.reading
    if r is None or not d.up:
        return  # no stale values presented as current
    out.add(POWER, r.power_watts, d)
    out.add(POWER_INSTANT, r.power_instant_watts, d)
    out.add(UTILIZATION, r.utilization_gpu, d)
    out.add(MEMORY_UTILIZATION, r.utilization_memory, d)
    out.add(MEMORY_USED, r.memory_used_bytes, d)
    out.add(MEMORY_TOTAL, r.memory_total_bytes, d)
    out.add(TEMPERATURE, r.temperature_celsius, d)
    out.add(CLOCK, r.sm_clock_hertz, d, "sm")
    out.add(CLOCK, r.memory_clock_hertz, d, "memory")
    out.add(PSTATE, r.pstate, d)
    if r.clock_event_reasons is not None:
        for bit, reason in CLOCK_EVENT_REASONS:
            out.add(CLOCK_EVENT, 1 if r.clock_event_reasons & bit else 0, d, reason)


def _render_gpm(out: Families, d: DeviceSnapshot) -> None:
    g = d.reading.gpm if d.reading is not None and d.up else None
    if g is None:
        return
    out.add(SM_ACTIVE, g.sm_active, d)
    out.add(SM_OCCUPANCY, g.sm_occupancy, d)
    out.add(TENSOR_ACTIVE, g.tensor_active, d)
    out.add(DRAM_ACTIVE, g.dram_active, d)
    for pipe, attr in PIPES:
        out.add(PIPE_ACTIVE, getattr(g, attr), d, pipe)
    out.add(GPM_PCIE_RATE, g.pcie_tx_bytes_per_second, d, "tx")
    out.add(GPM_PCIE_RATE, g.pcie_rx_bytes_per_second, d, "rx")
    if d.info.supports(Capability.NVLINK_COUNTERS):
        out.add(GPM_NVLINK_RATE, g.nvlink_tx_bytes_per_second, d, "tx")
        out.add(GPM_NVLINK_RATE, g.nvlink_rx_bytes_per_second, d, "rx")


def _render_pcie(out: Families, d: DeviceSnapshot) -> None:
    r = d.reading
    if r is None:  # counters keep their last value while a GPU is stale
        return
    if d.info.supports(Capability.PCIE_COUNTERS) or d.info.supports(Capability.GPM):
        out.add(PCIE_BYTES, d.waste.pcie_tx_bytes_total, d, "tx")
        out.add(PCIE_BYTES, d.waste.pcie_rx_bytes_total, d, "rx")
    out.add(NVLINK_BYTES, r.nvlink_tx_bytes, d, "tx")
    out.add(NVLINK_BYTES, r.nvlink_rx_bytes, d, "rx")


def _render_efficiency(out: Families, d: DeviceSnapshot) -> None:
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


def _render_processes(out: Families, d: DeviceSnapshot) -> None:
    for key, joules in d.process_energy.items():
        out.add(
            PROCESS_ENERGY,
            joules,
            d,
            str(key.pid),
            key.command,
            key.namespace,
            key.pod,
            key.container,
            key.container_id,
        )
    for pod, joules in d.pod_energy.items():
        out.add(POD_ENERGY, joules, d, pod.namespace, pod.pod, pod.container)
    if d.reading is None or not d.up:
        return
    for p in d.reading.processes:
        pid = str(p.pid)
        out.add(PROCESS_MEMORY, p.used_memory_bytes, d, pid, p.command)
        out.add(PROCESS_SM, p.sm_utilization, d, pid, p.command)


def _render_mig(out: Families, d: DeviceSnapshot) -> None:
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


Renderer = Callable[[Families, Snapshot], None]


def _per_device(render: Callable[[Families, DeviceSnapshot], None]) -> Renderer:
    def render_all(out: Families, snap: Snapshot) -> None:
        for device in snap.devices:
            render(out, device)

    return render_all


_RENDERERS: dict[str, Renderer] = {
    "gpu": _per_device(_render_gpu),
    "efficiency": _per_device(_render_efficiency),
    "gpm": _per_device(_render_gpm),
    "pcie": _per_device(_render_pcie),
    "processes": _per_device(_render_processes),
    "mig": _per_device(_render_mig),
    "inference": render_inference,
    "carbon": render_carbon,
    "host": render_host,
}


def render(
    snap: Snapshot,
    hostname: str | None,
    enabled: Sequence[str],
    build: tuple[str, str, str],
) -> Families:
    """Every enabled collector's series, then each collector's success and duration, then
    the exporter's own metrics."""
    out = Families(hostname)
    status: list[tuple[str, int, float]] = []
    for name in COLLECTOR_NAMES:
        if name not in enabled:
            continue
        part = Families(hostname)
        started = time.perf_counter()
        try:
            _RENDERERS[name](part, snap)
        except Exception:  # one broken collector must not fail the scrape
            log.exception("collector %s failed to render", name)
            ok = 0
        else:
            for family_name, family in part.by_name.items():
                out.by_name[family_name] = family
            ok = 1
        status.append((name, ok, time.perf_counter() - started))
    for name, ok, _seconds in status:
        out.add(SCRAPE_COLLECTOR_SUCCESS, ok, None, name)
    for name, _ok, seconds in status:
        out.add(SCRAPE_COLLECTOR_DURATION, seconds, None, name)
    _render_self(out, snap, build)
    return out


def _render_self(out: Families, snap: Snapshot, build: tuple[str, str, str]) -> None:
    out.add(BUILD_INFO, 1, None, *build)
    out.add(BACKEND_INFO, 1, None, snap.backend, snap.backend_reason)
    out.add(BACKEND_UP, 1 if snap.backend_up else 0)
    for operation, count in sorted(snap.backend_errors.items()):
        out.add(BACKEND_ERRORS, count, None, operation)
    out.add(COLLECTION_CYCLES, snap.cycles_total)
    out.add(COLLECTION_SKIPPED, snap.skipped_cycles_total)
    out.add(COLLECTION_DURATION, snap.cycle_seconds)
    out.add(COLLECTION_LAST, snap.cycle_unix)
    for source in snap.sources:
        out.add(SOURCE_UP, 1 if source.up else 0, None, source.kind, source.name)
        out.add(SOURCE_ERRORS, source.errors, None, source.kind, source.name)
        out.add(SOURCE_AGE, source.age_seconds, None, source.kind, source.name)
    for d in snap.devices:
        for call, count in sorted(d.errors.items()):
            out.add(COLLECTOR_ERRORS, count, d, call)
        out.add(GPU_READ_DURATION, d.read_seconds, d)
        out.add(GPU_LAST_SUCCESS, d.last_success_unix, d)
