"""What a GPU can report, asked once at start: capabilities, field ids, GPM buffers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from greenops_exporter.backends.base import Capability, DeviceInfo

MIB = 1024 * 1024

ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}

# GPM metric id name (in pynvml) -> (GpmReading field, scale to our unit)
GPM_METRICS: tuple[tuple[str, str, float], ...] = (
    ("NVML_GPM_METRIC_SM_UTIL", "sm_active", 0.01),
    ("NVML_GPM_METRIC_SM_OCCUPANCY", "sm_occupancy", 0.01),
    ("NVML_GPM_METRIC_ANY_TENSOR_UTIL", "tensor_active", 0.01),
    ("NVML_GPM_METRIC_HMMA_TENSOR_UTIL", "hmma_tensor_active", 0.01),
    ("NVML_GPM_METRIC_DRAM_BW_UTIL", "dram_active", 0.01),
    ("NVML_GPM_METRIC_FP64_UTIL", "fp64_active", 0.01),
    ("NVML_GPM_METRIC_FP32_UTIL", "fp32_active", 0.01),
    ("NVML_GPM_METRIC_FP16_UTIL", "fp16_active", 0.01),
    ("NVML_GPM_METRIC_INTEGER_UTIL", "integer_active", 0.01),
    ("NVML_GPM_METRIC_GRAPHICS_UTIL", "graphics_active", 0.01),
    ("NVML_GPM_METRIC_PCIE_TX_PER_SEC", "pcie_tx_bytes_per_second", MIB),
    ("NVML_GPM_METRIC_PCIE_RX_PER_SEC", "pcie_rx_bytes_per_second", MIB),
    ("NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC", "nvlink_tx_bytes_per_second", MIB),
    ("NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC", "nvlink_rx_bytes_per_second", MIB),
)


@dataclass
class Device:
    """Mutable per-device state, touched only by that device's read (never two at once)."""

    info: DeviceInfo
    handle: Any
    field_ids: list[Any] = field(default_factory=list)
    field_names: list[str] = field(default_factory=list)
    gpm_ids: list[tuple[int, str, float]] = field(default_factory=list)
    gpm_samples: list[Any] = field(default_factory=list)
    gpm_request: Any = None
    gpm_primed: bool = False
    lost: bool = False
    proc_util_seen_us: int = 0
    proc_util: dict[int, tuple[float, float]] = field(default_factory=dict)
    power_seen_us: int = 0  # timestamp of the newest driver power sample read
    last_sample_watts: float | None = None


def supported(n: ModuleType, fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except n.NVMLError:
        return False
    return True


def probe_device(n: ModuleType, index: int, handle: Any, driver: str) -> Device:
    """Ask each capability once; whatever raises here is left out for good."""
    caps: set[Capability] = {Capability.MEMORY}
    memory = n.nvmlDeviceGetMemoryInfo(handle)
    checks: list[tuple[Capability, Callable[[], Any]]] = [
        (Capability.POWER_AVERAGE, lambda: n.nvmlDeviceGetPowerUsage(handle)),
        (Capability.ENERGY_COUNTER, lambda: n.nvmlDeviceGetTotalEnergyConsumption(handle)),
        (Capability.UTILIZATION, lambda: n.nvmlDeviceGetUtilizationRates(handle)),
        (
            Capability.TEMPERATURE,
            lambda: n.nvmlDeviceGetTemperature(handle, n.NVML_TEMPERATURE_GPU),
        ),
        (Capability.CLOCKS, lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_SM)),
        (Capability.PSTATE, lambda: n.nvmlDeviceGetPerformanceState(handle)),
        (
            Capability.CLOCK_EVENT_REASONS,
            lambda: n.nvmlDeviceGetCurrentClocksEventReasons(handle),
        ),
        (Capability.PROCESSES, lambda: n.nvmlDeviceGetComputeRunningProcesses(handle)),
    ]
    for capability, check in checks:
        if supported(n, check):
            caps.add(capability)
    if process_utilization_supported(n, handle):
        caps.add(Capability.PROCESS_UTILIZATION)

    device = Device(info=None, handle=handle)  # type: ignore[arg-type]
    if gpm_supported(n, handle):
        caps.add(Capability.GPM)
        device.gpm_ids = [
            (getattr(n, const), attr, scale)
            for const, attr, scale in GPM_METRICS
            if hasattr(n, const)
        ]
        device.gpm_samples = [n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()]
        request = n.c_nvmlGpmMetricsGet_t()
        request.version = n.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(device.gpm_ids)
        for i, (metric_id, _attr, _scale) in enumerate(device.gpm_ids):
            request.metrics[i].metricId = metric_id
        device.gpm_request = request

    # The driver's 50 Hz power samples give energy between counter anchors and instant
    # power (their newest value) in one cheap call: the instant-power field is then not read.
    if power_samples_supported(n, handle):
        caps.add(Capability.POWER_SAMPLES)
    if field_supported(n, handle, n.NVML_FI_DEV_POWER_INSTANT):
        caps.add(Capability.POWER_INSTANT)
        if Capability.POWER_SAMPLES not in caps:
            device.field_ids.append(n.NVML_FI_DEV_POWER_INSTANT)
            device.field_names.append("power_instant")
    # The PCIe byte counters are 32-bit (they wrap several times a second) and cost 0.24 ms
    # a read on an H100: where GPM gives PCIe rates, they are not read at all.
    pcie = [n.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, n.NVML_FI_DEV_PCIE_COUNT_RX_BYTES]
    if all(field_supported(n, handle, f) for f in pcie):
        caps.add(Capability.PCIE_COUNTERS)
        if Capability.GPM not in caps:
            device.field_ids += pcie
            device.field_names += ["pcie_tx", "pcie_rx"]
    links = active_nvlinks(n, handle)
    if links:
        tx = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link) for link in links]
        rx = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link) for link in links]
        if field_supported(n, handle, tx[0]) and field_supported(n, handle, rx[0]):
            caps.add(Capability.NVLINK_COUNTERS)
            device.field_ids += tx + rx
            device.field_names += ["nvlink_tx"] * len(tx) + ["nvlink_rx"] * len(rx)

    mig_enabled = False
    try:
        current, _pending = n.nvmlDeviceGetMigMode(handle)
        mig_enabled = current == getattr(n, "NVML_DEVICE_MIG_ENABLE", 1)
    except n.NVMLError:
        pass
    if mig_enabled:
        caps.add(Capability.MIG)

    power_limit: float | None = None
    with contextlib.suppress(n.NVMLError):
        power_limit = n.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    try:
        architecture = ARCHITECTURES.get(n.nvmlDeviceGetArchitecture(handle), "unknown")
    except n.NVMLError:
        architecture = "unknown"
    device.info = DeviceInfo(
        index=index,
        uuid=str(n.nvmlDeviceGetUUID(handle)),
        name=str(n.nvmlDeviceGetName(handle)),
        pci_bus_id=str(n.nvmlDeviceGetPciInfo(handle).busId),
        memory_total_bytes=int(memory.total),
        power_limit_watts=power_limit,
        architecture=architecture,
        mig_enabled=mig_enabled,
        driver_version=driver,
        capabilities=frozenset(caps),
    )
    return device


def field_supported(n: ModuleType, handle: Any, field_id: Any) -> bool:
    try:
        values = n.nvmlDeviceGetFieldValues(handle, [field_id])
    except n.NVMLError:
        return False
    return bool(values[0].nvmlReturn == n.NVML_SUCCESS)


def active_nvlinks(n: ModuleType, handle: Any) -> list[int]:
    links = []
    for link in range(getattr(n, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            if n.nvmlDeviceGetNvLinkState(handle, link) == n.NVML_FEATURE_ENABLED:
                links.append(link)
        except n.NVMLError:
            continue
    return links


def gpm_supported(n: ModuleType, handle: Any) -> bool:
    try:
        return bool(n.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
    except (n.NVMLError, AttributeError):
        return False


def power_samples_supported(n: ModuleType, handle: Any) -> bool:
    """NOT_FOUND only means 'no sample newer than the timestamp given': the call works."""
    try:
        n.nvmlDeviceGetSamples(handle, n.NVML_TOTAL_POWER_SAMPLES, 0)
    except n.NVMLError as exc:
        return bool(exc.value == n.NVML_ERROR_NOT_FOUND)
    except AttributeError:
        return False
    return True


def process_utilization_supported(n: ModuleType, handle: Any) -> bool:
    """NOT_FOUND only means 'no new sample yet': the call itself works."""
    try:
        n.nvmlDeviceGetProcessUtilization(handle, 0)
    except n.NVMLError as exc:
        return bool(exc.value == n.NVML_ERROR_NOT_FOUND)
    return True
