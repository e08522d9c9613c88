"""Names, HELP and labels of the per-GPU metrics: power, energy, state, traffic, GPM,
efficiency, waste, processes and MIG. Dashboards, rules and the README check against these."""

from __future__ import annotations

from greenops_exporter.metrics.spec import counter, gauge

# --- GPU core --------------------------------------------------------------------------
GPU_INFO = gauge(
    "greenops_gpu_info",
    "GPU identity; always 1.",
    "model",
    "pci_bus_id",
    "driver_version",
    "architecture",
    "mig_mode",
)
GPU_UP = gauge(
    "greenops_gpu_up",
    "1 when the GPU's last read succeeded within its deadline, 0 when its values are stale.",
)
GPU_UNSUPPORTED = gauge(
    "greenops_gpu_unsupported_capability_info",
    "A capability the GPU lacks (probed once at start): its metrics are absent, not errors; "
    "always 1.",
    "capability",
)
POWER = gauge(
    "greenops_gpu_power_watts",
    "Board power as NVML averages it (about 1 s on Hopper: lags load steps), in watts.",
)
POWER_INSTANT = gauge(
    "greenops_gpu_power_instant_watts",
    "Instantaneous board power (NVML_FI_DEV_POWER_INSTANT), in watts.",
)
POWER_LIMIT = gauge("greenops_gpu_power_limit_watts", "Enforced power limit, in watts.")
ENERGY = counter(
    "greenops_gpu_energy_joules_total",
    "Energy the GPU consumed since the exporter started watching it, in joules: the "
    "driver's power samples (else instant, else averaged power) integrated between anchors "
    "on the total-energy counter, read every energy_anchor_seconds (30 s by default), each "
    "anchor's correction spread forward over the next interval; integrated power alone on "
    "GPUs without the counter.",
)
ENERGY_SOURCE = gauge(
    "greenops_gpu_energy_source_info",
    "Which signal the energy counter is built from (counter, instant_power, average_power); "
    "always 1.",
    "source",
)
ENERGY_RESETS = counter(
    "greenops_gpu_energy_resets_total",
    "Times NVML's energy counter went backwards (driver reload); never a negative increase.",
)
UTILIZATION = gauge(
    "greenops_gpu_utilization_ratio",
    "Share of the last sample period in which a kernel ran (NVML utilization.gpu), 0..1. "
    "Not SM busy-ness: see greenops_gpu_sm_active_ratio.",
)
MEMORY_UTILIZATION = gauge(
    "greenops_gpu_memory_copy_utilization_ratio",
    "Share of the last sample period in which device memory was read or written "
    "(NVML utilization.memory), 0..1.",
)
MEMORY_USED = gauge("greenops_gpu_memory_used_bytes", "Device memory in use, in bytes.")
MEMORY_TOTAL = gauge("greenops_gpu_memory_total_bytes", "Device memory in total, in bytes.")
TEMPERATURE = gauge("greenops_gpu_temperature_celsius", "GPU core temperature, in degrees Celsius.")
CLOCK = gauge("greenops_gpu_clock_hertz", "Current clock frequency, in hertz.", "clock")
PSTATE = gauge("greenops_gpu_performance_state", "Performance state (0 = P0, fastest, to 15).")
CLOCK_EVENT = gauge(
    "greenops_gpu_clock_event_reason",
    "1 while the reason holds clocks down (throttling; NVML clock event reasons), else 0.",
    "reason",
)
# --- traffic ---------------------------------------------------------------------------
PCIE_BYTES = counter(
    "greenops_gpu_pcie_bytes_total",
    "Bytes moved over PCIe by direction (tx = from the GPU), from NVML's byte counters.",
    "direction",
)
NVLINK_BYTES = counter(
    "greenops_gpu_nvlink_bytes_total",
    "Bytes moved over NVLink by direction, summed over active links.",
    "direction",
)
# --- GPM -------------------------------------------------------------------------------
SM_ACTIVE = gauge(
    "greenops_gpu_sm_active_ratio",
    "Share of SMs busy over the last collection interval (GPM sm_util), 0..1.",
)
SM_OCCUPANCY = gauge(
    "greenops_gpu_sm_occupancy_ratio",
    "Resident warps against the theoretical maximum over the last interval (GPM), 0..1.",
)
TENSOR_ACTIVE = gauge(
    "greenops_gpu_tensor_active_ratio",
    "Share of time any tensor pipe was busy over the last interval (GPM), 0..1.",
)
DRAM_ACTIVE = gauge(
    "greenops_gpu_dram_active_ratio",
    "Device-memory bandwidth used against its peak over the last interval (GPM), 0..1.",
)
PIPE_ACTIVE = gauge(
    "greenops_gpu_pipe_active_ratio",
    "Share of time a math pipe was busy over the last interval (GPM), 0..1.",
    "pipe",
)
GPM_PCIE_RATE = gauge(
    "greenops_gpu_pcie_throughput_bytes_per_second",
    "PCIe traffic over the last interval by direction (GPM), in bytes per second.",
    "direction",
)
GPM_NVLINK_RATE = gauge(
    "greenops_gpu_nvlink_throughput_bytes_per_second",
    "NVLink traffic over the last interval by direction (GPM), in bytes per second.",
    "direction",
)
# --- efficiency and waste --------------------------------------------------------------
BOTTLENECK = gauge(
    "greenops_gpu_bottleneck",
    "1 for the class that holds the GPU back over the last interval (idle, compute, memory, "
    "io, overhead; unknown where the GPU reports no activity), 0 for the others.",
    "class",
)
BOTTLENECK_SIGNALS = gauge(
    "greenops_gpu_bottleneck_signals_info",
    "Which signals decided the bottleneck class: gpm (SM, tensor, DRAM activity) or basic "
    "(utilisation and PCIe counters); always 1.",
    "signals",
)
BOTTLENECK_SECONDS = counter(
    "greenops_gpu_bottleneck_seconds_total",
    "Seconds the GPU spent in each bottleneck class (unknown: no activity reported).",
    "class",
)
BOTTLENECK_ENERGY = counter(
    "greenops_gpu_bottleneck_energy_joules_total",
    "Joules the GPU spent in each bottleneck class (unknown: no activity reported); the "
    "classes sum to the GPU's energy.",
    "class",
)
IDLE_ENERGY = counter(
    "greenops_gpu_idle_energy_joules_total",
    "Joules spent idle, by whether a process held a context or memory meanwhile "
    "(holder=process) or not (holder=none).",
    "holder",
)
STRANDED_MEMORY = gauge(
    "greenops_gpu_stranded_memory_bytes",
    "Device memory held by processes on a GPU idle for longer than the stranded-after time, "
    "in bytes.",
)
PROCESS_STRANDED_MEMORY = gauge(
    "greenops_process_stranded_memory_bytes",
    "Device memory a process holds on a GPU idle for longer than the stranded-after time, "
    "in bytes.",
    "pid",
    "command",
    "namespace",
    "pod",
    "container",
)
UNDERUTILIZATION = gauge(
    "greenops_gpu_underutilization_ratio",
    "max(0, (target - activity) / target) with activity the SM activity (GPM) or "
    "utilisation averaged over the configured window, 0..1.",
)
MIG_RIGHTSIZE = gauge(
    "greenops_gpu_mig_rightsize_info",
    "The smallest MIG profile that would have held the GPU's work over the advice window "
    "(peak memory and peak SM activity, 10 % headroom); absent when none smaller fits; "
    "always 1.",
    "profile",
)
MIG_RIGHTSIZE_FREED = gauge(
    "greenops_gpu_mig_rightsize_freed_ratio",
    "Share of the GPU that right-sizing to that MIG profile would free, 0..1.",
)
RECOMMENDATION = gauge(
    "greenops_gpu_recommendation_info",
    "What to do about this GPU's efficiency, from its class mix and waste over the advice "
    "window; always 1.",
    "code",
    "text",
)
PROCESS_ENERGY = counter(
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
POD_ENERGY = counter(
    "greenops_pod_energy_joules_total",
    "Joules attributed to a pod's container on this GPU (the sum of its processes' shares). "
    "Ended pods expire.",
    "namespace",
    "pod",
    "container",
)
# --- processes and MIG -----------------------------------------------------------------
PROCESS_MEMORY = gauge(
    "greenops_process_gpu_memory_bytes",
    "Device memory a compute process holds, in bytes.",
    "pid",
    "command",
)
PROCESS_SM = gauge(
    "greenops_process_sm_utilization_ratio",
    "A process's share of SM time (NVML process utilization; read while a GPU is shared), 0..1.",
    "pid",
    "command",
)
MIG_INFO = gauge(
    "greenops_mig_device_info",
    "A MIG device (GPU instance / compute instance) and its profile; always 1.",
    "gpu_instance",
    "compute_instance",
    "profile",
    "mig_uuid",
)
MIG_BOTTLENECK = gauge(
    "greenops_mig_bottleneck",
    "1 for the class that holds a MIG GPU instance back over the last interval, from its own "
    "activity (idle, compute, memory, io, overhead, unknown), 0 for the others.",
    "gpu_instance",
    "profile",
    "class",
)
MIG_BOTTLENECK_SECONDS = counter(
    "greenops_mig_bottleneck_seconds_total",
    "Seconds a MIG GPU instance spent in each bottleneck class.",
    "gpu_instance",
    "profile",
    "class",
)
MIG_RECOMMENDATION = gauge(
    "greenops_mig_recommendation_info",
    "What to do about a MIG GPU instance, from its own class over the last interval; always 1.",
    "gpu_instance",
    "profile",
    "code",
    "text",
)
MIG_UNALLOCATED = gauge(
    "greenops_gpu_mig_unallocated_ratio",
    "Share of a MIG GPU's compute slices in no GPU instance (capacity nobody can use), 0..1.",
)
MIG_MEMORY_USED = gauge(
    "greenops_mig_memory_used_bytes",
    "Device memory in use on a MIG device, in bytes.",
    "gpu_instance",
    "compute_instance",
    "profile",
)
MIG_MEMORY_TOTAL = gauge(
    "greenops_mig_memory_total_bytes",
    "Device memory of a MIG device, in bytes.",
    "gpu_instance",
    "compute_instance",
    "profile",
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
    "host",
)
