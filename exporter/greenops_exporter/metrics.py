"""Every metric name, HELP text and label set, and the Snapshot -> metric families renderer.

One module holds all names so that dashboards, rules and docs have one place to check.
Rendering follows client_python's custom-collector pattern: families are built fresh from
the last immutable Snapshot on each scrape; nothing global is mutated and NVML is never
called from here. Families are grouped into named collectors (node_exporter's pattern):
each can be switched off and reports its own success and duration, and one that fails
never fails the scrape.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .analysis.bottleneck import BottleneckClass
from .backends.base import Capability
from .collect import DeviceSnapshot, Snapshot

log = logging.getLogger(__name__)

GPU_LABELS = ("gpu", "uuid")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed; counters end in _total
    kind: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...] = ()
    gpu: bool = True  # carries gpu, uuid (and hostname) labels

    def family(self, hostname: str | None) -> GaugeMetricFamily | CounterMetricFamily:
        labels = list(self.labels)
        if self.gpu:
            labels = [*GPU_LABELS, *labels]
            if hostname is not None:
                labels = ["hostname", *labels]
        if self.kind == "counter":
            return CounterMetricFamily(self.name.removesuffix("_total"), self.help, labels=labels)
        return GaugeMetricFamily(self.name, self.help, labels=labels)


def _g(name: str, help: str, *labels: str, gpu: bool = True) -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels, gpu)


def _c(name: str, help: str, *labels: str, gpu: bool = True) -> MetricSpec:
    return MetricSpec(name, "counter", help, labels, gpu)


# --- GPU core --------------------------------------------------------------------------
GPU_INFO = _g(
    "greenops_gpu_info",
    "GPU identity; always 1.",
    "model",
    "pci_bus_id",
    "driver_version",
    "architecture",
    "mig_mode",
)
GPU_UP = _g(
    "greenops_gpu_up",
    "1 when the GPU's last read succeeded within its deadline, 0 when its values are stale.",
)
GPU_UNSUPPORTED = _g(
    "greenops_gpu_unsupported_capability_info",
    "A capability the GPU lacks (probed once at start): its metrics are absent, not errors; "
    "always 1.",
    "capability",
)
POWER = _g(
    "greenops_gpu_power_watts",
    "Board power as NVML averages it (about 1 s on Hopper: lags load steps), in watts.",
)
POWER_INSTANT = _g(
    "greenops_gpu_power_instant_watts",
    "Instantaneous board power (NVML_FI_DEV_POWER_INSTANT), in watts.",
)
POWER_LIMIT = _g("greenops_gpu_power_limit_watts", "Enforced power limit, in watts.")
ENERGY = _c(
    "greenops_gpu_energy_joules_total",
    "Energy the GPU consumed since the exporter started watching it, in joules: NVML's "
    "total-energy counter read as an anchor every few seconds with instant power integrated "
    "in between; integrated power on GPUs without the counter.",
)
ENERGY_SOURCE = _g(
    "greenops_gpu_energy_source_info",
    "Which signal the energy counter is built from (counter, instant_power, average_power); "
    "always 1.",
    "source",
)
ENERGY_RESETS = _c(
    "greenops_gpu_energy_counter_resets_total",
    "Times NVML's energy counter went backwards (driver reload); never a negative increase.",
)
UTILIZATION = _g(
    "greenops_gpu_utilization_ratio",
    "Share of the last sample period in which a kernel ran (NVML utilization.gpu), 0..1. "
    "Not SM busy-ness: see greenops_gpu_sm_active_ratio.",
)
MEMORY_UTILIZATION = _g(
    "greenops_gpu_memory_copy_utilization_ratio",
    "Share of the last sample period in which device memory was read or written "
    "(NVML utilization.memory), 0..1.",
)
MEMORY_USED = _g("greenops_gpu_memory_used_bytes", "Device memory in use, in bytes.")
MEMORY_TOTAL = _g("greenops_gpu_memory_total_bytes", "Device memory in total, in bytes.")
TEMPERATURE = _g("greenops_gpu_temperature_celsius", "GPU core temperature, in degrees Celsius.")
CLOCK = _g("greenops_gpu_clock_hertz", "Current clock frequency, in hertz.", "clock")
PSTATE = _g("greenops_gpu_performance_state", "Performance state (0 = P0, fastest, to 15).")
CLOCK_EVENT = _g(
    "greenops_gpu_clock_event_reason",
    "1 while the reason holds clocks down (throttling; NVML clock event reasons), else 0.",
    "reason",
)
# --- traffic ---------------------------------------------------------------------------
PCIE_BYTES = _c(
    "greenops_gpu_pcie_bytes_total",
    "Bytes moved over PCIe by direction (tx = from the GPU), from NVML's byte counters.",
    "direction",
)
NVLINK_BYTES = _c(
    "greenops_gpu_nvlink_bytes_total",
    "Bytes moved over NVLink by direction, summed over active links.",
    "direction",
)
# --- GPM -------------------------------------------------------------------------------
SM_ACTIVE = _g(
    "greenops_gpu_sm_active_ratio",
    "Share of SMs busy over the last collection interval (GPM sm_util), 0..1.",
)
SM_OCCUPANCY = _g(
    "greenops_gpu_sm_occupancy_ratio",
    "Resident warps against the theoretical maximum over the last interval (GPM), 0..1.",
)
TENSOR_ACTIVE = _g(
    "greenops_gpu_tensor_active_ratio",
    "Share of time any tensor pipe was busy over the last interval (GPM), 0..1.",
)
DRAM_ACTIVE = _g(
    "greenops_gpu_dram_active_ratio",
    "Device-memory bandwidth used against its peak over the last interval (GPM), 0..1.",
)
PIPE_ACTIVE = _g(
    "greenops_gpu_pipe_active_ratio",
    "Share of time a math pipe was busy over the last interval (GPM), 0..1.",
    "pipe",
)
GPM_PCIE_RATE = _g(
    "greenops_gpu_pcie_throughput_bytes_per_second",
    "PCIe traffic over the last interval by direction (GPM), in bytes per second.",
    "direction",
)
GPM_NVLINK_RATE = _g(
    "greenops_gpu_nvlink_throughput_bytes_per_second",
    "NVLink traffic over the last interval by direction (GPM), in bytes per second.",
    "direction",
)
# --- efficiency and waste --------------------------------------------------------------
BOTTLENECK = _g(
    "greenops_gpu_bottleneck",
    "1 for the class that holds the GPU back over the last interval (idle, compute, memory, "
    "io, overhead), 0 for the others.",
    "class",
)
BOTTLENECK_SIGNALS = _g(
    "greenops_gpu_bottleneck_signals_info",
    "Which signals decided the bottleneck class: gpm (SM, tensor, DRAM activity) or basic "
    "(utilisation and PCIe counters); always 1.",
    "signals",
)
BOTTLENECK_SECONDS = _c(
    "greenops_gpu_bottleneck_seconds_total",
    "Seconds the GPU spent in each bottleneck class.",
    "class",
)
BOTTLENECK_ENERGY = _c(
    "greenops_gpu_bottleneck_energy_joules_total",
    "Joules the GPU spent in each bottleneck class.",
    "class",
)
IDLE_ENERGY = _c(
    "greenops_gpu_idle_energy_joules_total",
    "Joules spent idle, by whether a process held a context or memory meanwhile "
    "(holder=process) or not (holder=none).",
    "holder",
)
STRANDED_MEMORY = _g(
    "greenops_gpu_stranded_memory_bytes",
    "Device memory held by processes on a GPU idle for longer than the stranded-after time, "
    "in bytes.",
)
PROCESS_STRANDED_MEMORY = _g(
    "greenops_process_stranded_memory_bytes",
    "Device memory a process holds on a GPU idle for longer than the stranded-after time, "
    "in bytes.",
    "pid",
    "command",
    "namespace",
    "pod",
    "container",
)
UNDERUTILIZATION = _g(
    "greenops_gpu_underutilization_ratio",
    "max(0, (target - activity) / target) with activity the SM activity (GPM) or "
    "utilisation averaged over the configured window, 0..1.",
)
MIG_RIGHTSIZE = _g(
    "greenops_gpu_mig_rightsize_info",
    "The smallest MIG profile that would have held the GPU's work over the advice window "
    "(peak memory and peak SM activity, 10 % headroom); absent when none smaller fits; "
    "always 1.",
    "profile",
)
MIG_RIGHTSIZE_FREED = _g(
    "greenops_gpu_mig_rightsize_freed_ratio",
    "Share of the GPU that right-sizing to that MIG profile would free, 0..1.",
)
RECOMMENDATION = _g(
    "greenops_gpu_recommendation_info",
    "What to do about this GPU's efficiency, from its class mix and waste over the advice "
    "window; always 1.",
    "code",
    "text",
)
PROCESS_ENERGY = _c(
    "greenops_process_energy_joules_total",
    "Joules attributed to a process: its GPU's energy split among the GPU's processes by SM "
    "share (active part) and evenly (idle part). Ended processes expire.",
    "pid",
    "command",
    "namespace",
    "pod",
    "container",
    "container_id",
)
POD_ENERGY = _c(
    "greenops_pod_energy_joules_total",
    "Joules attributed to a pod's container on this GPU (the sum of its processes' shares). "
    "Ended pods expire.",
    "namespace",
    "pod",
    "container",
)
# --- inference -------------------------------------------------------------------------
INFERENCE_ENERGY = _c(
    "greenops_inference_energy_joules_total",
    "Joules spent by an inference server's GPUs (or its processes' shares of shared GPUs), "
    "split among its models by their share of requests.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_REQUESTS = _c(
    "greenops_inference_requests_total",
    "Requests the server completed (its own counter, restarts smoothed out).",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_TOKENS = _c(
    "greenops_inference_tokens_total",
    "Tokens the server processed, by kind (prompt, generation).",
    "source",
    "kind",
    "model",
    "token_kind",
    gpu=False,
)
INFERENCE_JOULES_PER_REQUEST = _g(
    "greenops_inference_joules_per_request",
    "Joules per completed request over the inference window.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_JOULES_PER_TOKEN = _g(
    "greenops_inference_joules_per_token",
    "Joules per token over the inference window: per generated token (token_kind=generation) "
    "or per prompt and generated token (token_kind=all).",
    "source",
    "kind",
    "model",
    "token_kind",
    gpu=False,
)
# --- carbon and cost -------------------------------------------------------------------
GPU_CARBON = _c(
    "greenops_gpu_carbon_grams_total",
    "Grams of CO2e: operational (kWh x PUE x the grid intensity in force each cycle) and "
    "embodied (the GPU's manufacturing footprint spread over its lifetime, per the SCI spec).",
    "scope",
)
POD_CARBON = _c(
    "greenops_pod_carbon_grams_total",
    "Grams of CO2e attributed to a pod's container on this GPU, by scope, split like energy.",
    "namespace",
    "pod",
    "container",
    "scope",
)
GPU_COST = _c(
    "greenops_gpu_cost_total",
    "Money spent on the GPU: energy (kWh x PUE x price) and rental (hours x hourly price).",
    "kind",
    "currency",
)
GPU_WASTE_COST = _c(
    "greenops_gpu_waste_cost_total",
    "Energy and rental cost of the time the GPU spent idle or overhead-bound.",
    "class",
    "currency",
)
POD_COST = _c(
    "greenops_pod_cost_total",
    "Energy and rental cost attributed to a pod's container on this GPU, split like energy.",
    "namespace",
    "pod",
    "container",
    "currency",
)
POD_WASTE_COST = _c(
    "greenops_pod_waste_cost_total",
    "A pod's share of the cost of the time its GPU spent idle or overhead-bound.",
    "namespace",
    "pod",
    "container",
    "class",
    "currency",
)
GRID_INTENSITY = _g(
    "greenops_grid_carbon_intensity_grams_per_kwh",
    "The grid carbon intensity in force, in gCO2e/kWh, and where it came from (a live API or "
    "the static table).",
    "source",
    "zone",
    gpu=False,
)
FORECAST_MIN = _g(
    "greenops_grid_carbon_intensity_forecast_min_grams_per_kwh",
    "The lowest intensity in the current forecast, in gCO2e/kWh.",
    "zone",
    gpu=False,
)
GREENEST_START = _g(
    "greenops_greenest_window_start_timestamp_seconds",
    "Unix time at which the greenest window of the configured length starts, within the "
    "configured horizon.",
    "zone",
    gpu=False,
)
GREENEST_MEAN = _g(
    "greenops_greenest_window_mean_grams_per_kwh",
    "Mean forecast intensity over the greenest window, in gCO2e/kWh.",
    "zone",
    gpu=False,
)
GREENEST_SAVING = _g(
    "greenops_greenest_window_saving_ratio",
    "Share of carbon saved by starting at the greenest window instead of now, 0..1.",
    "zone",
    gpu=False,
)
INFERENCE_CARBON = _c(
    "greenops_inference_carbon_grams_total",
    "Grams of CO2e (operational and embodied) of an inference server's work, by model.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_SCI_REQUEST = _g(
    "greenops_inference_sci_grams_per_request",
    "Software Carbon Intensity per request over the inference window: (E x I + M) / R, grams.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_SCI_TOKEN = _g(
    "greenops_inference_sci_grams_per_token",
    "Software Carbon Intensity per prompt and generated token over the window, grams.",
    "source",
    "kind",
    "model",
    gpu=False,
)
# --- processes and MIG -----------------------------------------------------------------
PROCESS_MEMORY = _g(
    "greenops_process_gpu_memory_bytes",
    "Device memory a compute process holds, in bytes.",
    "pid",
    "command",
)
PROCESS_SM = _g(
    "greenops_process_sm_utilization_ratio",
    "A process's share of SM time (NVML process utilization; read while a GPU is shared), 0..1.",
    "pid",
    "command",
)
MIG_INFO = _g(
    "greenops_mig_device_info",
    "A MIG device (GPU instance / compute instance) and its profile; always 1.",
    "gpu_instance",
    "compute_instance",
    "profile",
    "mig_uuid",
)
MIG_MEMORY_USED = _g(
    "greenops_mig_memory_used_bytes",
    "Device memory in use on a MIG device, in bytes.",
    "gpu_instance",
    "compute_instance",
    "profile",
)
MIG_MEMORY_TOTAL = _g(
    "greenops_mig_memory_total_bytes",
    "Device memory of a MIG device, in bytes.",
    "gpu_instance",
    "compute_instance",
    "profile",
)
# --- the exporter itself ---------------------------------------------------------------
BUILD_INFO = _g(
    "greenops_build_info",
    "Build of the exporter; always 1.",
    "version",
    "python_version",
    "nvml_bindings_version",
    gpu=False,
)
BACKEND_INFO = _g(
    "greenops_backend_info",
    "Where readings come from (nvml, sim, replay) and why it was chosen; always 1.",
    "backend",
    "reason",
    gpu=False,
)
BACKEND_UP = _g(
    "greenops_backend_up",
    "1 when the backend started (NVML loaded, scenario or recording read), else 0; the "
    "exporter retries and keeps serving its own metrics meanwhile.",
    gpu=False,
)
BACKEND_ERRORS = _c(
    "greenops_backend_errors_total",
    "Failures of the backend as a whole by operation (open).",
    "operation",
    gpu=False,
)
COLLECTOR_ERRORS = _c(
    "greenops_collector_errors_total",
    "Failed reads by NVML call (or 'deadline' when a read missed its deadline).",
    "call",
)
COLLECTION_CYCLES = _c(
    "greenops_collection_cycles_total",
    "Collection cycles run. Collection happens on the exporter's own clock, not on scrape, "
    "so that energy integrals stay exact and every scraper sees one consistent state.",
    gpu=False,
)
COLLECTION_DURATION = _g(
    "greenops_collection_duration_seconds",
    "Wall time of the last collection cycle (all GPUs read concurrently), in seconds. "
    "Collection runs off the scrape path.",
    gpu=False,
)
COLLECTION_LAST = _g(
    "greenops_collection_last_timestamp_seconds",
    "Unix time the last collection cycle ended.",
    gpu=False,
)
GPU_READ_DURATION = _g(
    "greenops_gpu_read_duration_seconds",
    "Wall time of the GPU's last successful read, in seconds.",
)
GPU_LAST_SUCCESS = _g(
    "greenops_gpu_last_success_timestamp_seconds",
    "Unix time of the GPU's last successful read.",
)
SOURCE_UP = _g(
    "greenops_source_up",
    "1 when the source's last fetch succeeded (kubelet, inference server, carbon API), else 0.",
    "kind",
    "name",
    gpu=False,
)
SOURCE_ERRORS = _c(
    "greenops_source_errors_total",
    "Failed fetches of the source; it backs off and keeps its last good value.",
    "kind",
    "name",
    gpu=False,
)
SOURCE_AGE = _g(
    "greenops_source_age_seconds",
    "Seconds since the source's last good fetch.",
    "kind",
    "name",
    gpu=False,
)
SCRAPE_COLLECTOR_SUCCESS = _g(
    "greenops_scrape_collector_success",
    "1 when the named collector rendered its metrics on this scrape, else 0.",
    "collector",
    gpu=False,
)
SCRAPE_COLLECTOR_DURATION = _g(
    "greenops_scrape_collector_duration_seconds",
    "Time the named collector took to render its metrics on this scrape, in seconds.",
    "collector",
    gpu=False,
)

ALL_METRICS: tuple[MetricSpec, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, MetricSpec)
)

CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

PIPES = (
    ("fp64", "fp64_active"),
    ("fp32", "fp32_active"),
    ("fp16", "fp16_active"),
    ("integer", "integer_active"),
    ("hmma_tensor", "hmma_tensor_active"),
)

# Collectors that can be switched off. The "exporter" self-metrics are always on.
COLLECTOR_NAMES = (
    "gpu",
    "efficiency",
    "gpm",
    "pcie",
    "processes",
    "mig",
    "inference",
    "carbon",
)


class _Families:
    """Builds families for one scrape, adding the per-GPU label prefix in one place."""

    def __init__(self, hostname: str | None) -> None:
        self.hostname = hostname
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(
        self,
        spec: MetricSpec,
        value: float | None,
        device: DeviceSnapshot | None = None,
        *labels: str,
    ) -> None:
        if value is None:
            return
        family = self._families.get(spec.name)
        if family is None:
            family = self._families[spec.name] = spec.family(self.hostname)
        prefix: list[str] = []
        if spec.gpu:
            assert device is not None
            prefix = [str(device.info.index), device.info.uuid]
            if self.hostname is not None:
                prefix = [self.hostname, *prefix]
        family.add_metric([*prefix, *labels], float(value))

    def families(self) -> Iterable[Metric]:
        return self._families.values()


def _render_gpu(out: _Families, d: DeviceSnapshot) -> None:
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


def _render_gpm(out: _Families, d: DeviceSnapshot) -> None:
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


def _render_pcie(out: _Families, d: DeviceSnapshot) -> None:
    r = d.reading
    if r is None:  # counters keep their last value while a GPU is stale
        return
    if d.info.supports(Capability.PCIE_COUNTERS) or d.info.supports(Capability.GPM):
        out.add(PCIE_BYTES, d.waste.pcie_tx_bytes_total, d, "tx")
        out.add(PCIE_BYTES, d.waste.pcie_rx_bytes_total, d, "rx")
    out.add(NVLINK_BYTES, r.nvlink_tx_bytes, d, "tx")
    out.add(NVLINK_BYTES, r.nvlink_rx_bytes, d, "rx")


def _render_efficiency(out: _Families, d: DeviceSnapshot) -> None:
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


def _render_processes(out: _Families, d: DeviceSnapshot) -> None:
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


def _render_mig(out: _Families, d: DeviceSnapshot) -> None:
    if d.reading is None or not d.up:
        return
    for m in d.reading.mig_devices:
        gi, ci = str(m.gpu_instance_id), str(m.compute_instance_id)
        out.add(MIG_INFO, 1, d, gi, ci, m.profile, m.uuid)
        out.add(MIG_MEMORY_USED, m.memory_used_bytes, d, gi, ci, m.profile)
        out.add(MIG_MEMORY_TOTAL, m.memory_total_bytes, d, gi, ci, m.profile)


def _render_inference(out: _Families, snap: Snapshot) -> None:
    for source in snap.inference:
        for m in source.models:
            labels = (source.name, source.kind, m.model)
            out.add(INFERENCE_ENERGY, m.totals.energy_joules, None, *labels)
            out.add(INFERENCE_REQUESTS, m.totals.requests, None, *labels)
            out.add(INFERENCE_TOKENS, m.totals.prompt_tokens, None, *labels, "prompt")
            out.add(INFERENCE_TOKENS, m.totals.generation_tokens, None, *labels, "generation")
            out.add(INFERENCE_JOULES_PER_REQUEST, m.joules_per_request, None, *labels)
            out.add(
                INFERENCE_JOULES_PER_TOKEN,
                m.joules_per_generated_token,
                None,
                *labels,
                "generation",
            )
            out.add(INFERENCE_JOULES_PER_TOKEN, m.joules_per_token, None, *labels, "all")
            out.add(INFERENCE_CARBON, m.totals.carbon_grams, None, *labels)
            out.add(INFERENCE_SCI_REQUEST, m.sci_grams_per_request, None, *labels)
            out.add(INFERENCE_SCI_TOKEN, m.sci_grams_per_token, None, *labels)


def _render_carbon(out: _Families, snap: Snapshot) -> None:
    if snap.intensity is not None:
        zone = snap.intensity.zone
        out.add(GRID_INTENSITY, snap.intensity.grams_per_kwh, None, snap.intensity.source, zone)
        out.add(FORECAST_MIN, snap.forecast_min_grams_per_kwh, None, zone)
        if snap.greenest is not None:
            out.add(GREENEST_START, snap.greenest.start.timestamp(), None, zone)
            out.add(GREENEST_MEAN, snap.greenest.mean_grams_per_kwh, None, zone)
            out.add(GREENEST_SAVING, snap.greenest.saving_ratio, None, zone)
    for d in snap.devices:
        c = d.costs
        out.add(GPU_CARBON, c.operational_grams, d, "operational")
        out.add(GPU_CARBON, c.embodied_grams, d, "embodied")
        out.add(GPU_COST, c.energy_cost, d, "energy", c.currency)
        out.add(GPU_COST, c.rental_cost, d, "rental", c.currency)
        for cls, cost in c.waste_cost.items():
            out.add(GPU_WASTE_COST, cost, d, cls.value, c.currency)
        for pod, pc in d.pod_costs.items():
            labels = (pod.namespace, pod.pod, pod.container)
            out.add(POD_CARBON, pc.operational_grams, d, *labels, "operational")
            out.add(POD_CARBON, pc.embodied_grams, d, *labels, "embodied")
            out.add(POD_COST, pc.cost, d, *labels, c.currency)
        for (pod, cls), cost in d.pod_waste_cost.items():
            out.add(
                POD_WASTE_COST,
                cost,
                d,
                pod.namespace,
                pod.pod,
                pod.container,
                cls.value,
                c.currency,
            )


Renderer = Callable[[_Families, Snapshot], None]


def _per_device(render: Callable[[_Families, DeviceSnapshot], None]) -> Renderer:
    def render_all(out: _Families, snap: Snapshot) -> None:
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
    "inference": _render_inference,
    "carbon": _render_carbon,
}


def _bindings_version() -> str:
    try:
        return metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        return "absent"


class SnapshotCollector(Collector):
    """A client_python custom collector over the collection loop's latest Snapshot."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        hostname: str | None,
        enabled: Sequence[str] = COLLECTOR_NAMES,
    ) -> None:
        self._snapshot = snapshot
        self._hostname = hostname
        self._enabled = [name for name in COLLECTOR_NAMES if name in enabled]
        self._build = (__version__, platform.python_version(), _bindings_version())

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        status = _Families(None)
        for name in self._enabled:
            out = _Families(self._hostname)
            started = time.perf_counter()
            try:
                _RENDERERS[name](out, snap)
            except Exception:  # one broken collector must not fail the scrape
                log.exception("collector %s failed to render", name)
                status.add(SCRAPE_COLLECTOR_SUCCESS, 0, None, name)
            else:
                yield from out.families()
                status.add(SCRAPE_COLLECTOR_SUCCESS, 1, None, name)
            status.add(SCRAPE_COLLECTOR_DURATION, time.perf_counter() - started, None, name)
        yield from status.families()
        yield from self._self_metrics(snap)

    def _self_metrics(self, snap: Snapshot) -> Iterable[Metric]:
        out = _Families(self._hostname)
        out.add(BUILD_INFO, 1, None, *self._build)
        out.add(BACKEND_INFO, 1, None, snap.backend, snap.backend_reason)
        out.add(BACKEND_UP, 1 if snap.backend_up else 0)
        for operation, count in sorted(snap.backend_errors.items()):
            out.add(BACKEND_ERRORS, count, None, operation)
        out.add(COLLECTION_CYCLES, snap.cycles_total)
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
        return out.families()
