"""Real GPUs through NVML (nvidia-ml-py): probe once, then cheap reads on every cycle.

Every call here blocks (ctypes into libnvidia-ml), so the collection loop runs `read` in a
worker thread with a deadline. The module object is injected so that the tests can run this
exact code against recorded H100 values.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import psutil

from .base import (
    BackendUnavailable,
    Capability,
    DeviceInfo,
    DeviceReadError,
    GpmReading,
    MigReading,
    ProcessReading,
    ProcessUtilizationPolicy,
    Reading,
    ReadPlan,
)

log = logging.getLogger(__name__)

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

# Return codes after which the device (or the whole library) cannot be trusted this cycle.
_FATAL_CODES = (
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_INVALID_ARGUMENT",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_RESET_REQUIRED",
    "NVML_ERROR_GPU_NOT_FOUND",
    "NVML_ERROR_UNKNOWN",
)
_LIBRARY_GONE_CODES = (
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
)


@dataclass
class _Device:
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


class NvmlBackend:
    name = "nvml"
    local_pids = True  # NVML reports the host's pids (the node's /proc in a container)

    def __init__(
        self,
        nvml: ModuleType | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._devices: dict[int, _Device] = {}
        self._init_lock = threading.Lock()
        self._library_ok = False
        self._commands: dict[int, str] = {}

    # --- start and stop -------------------------------------------------------------------

    def _module(self) -> ModuleType:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as exc:  # pragma: no cover - a dependency of the package
                raise BackendUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
            self._nvml = pynvml
        return self._nvml

    def open(self) -> list[DeviceInfo]:
        n = self._module()
        try:
            n.nvmlInit()
            driver = n.nvmlSystemGetDriverVersion()
            count = n.nvmlDeviceGetCount()
        except n.NVMLError as exc:
            raise BackendUnavailable(f"NVML could not start: {exc}") from exc
        self._library_ok = True
        devices: list[DeviceInfo] = []
        for index in range(count):
            try:
                handle = n.nvmlDeviceGetHandleByIndex(index)
                device = self._probe(index, handle, str(driver))
            except n.NVMLError as exc:
                log.warning("GPU %d cannot be probed and is skipped: %s", index, exc)
                continue
            self._devices[index] = device
            devices.append(device.info)
        return devices

    def close(self) -> None:
        if self._nvml is None or not self._library_ok:
            return
        n = self._nvml
        for device in self._devices.values():
            for sample in device.gpm_samples:
                with contextlib.suppress(n.NVMLError):
                    n.nvmlGpmSampleFree(sample)
        with contextlib.suppress(n.NVMLError):
            n.nvmlShutdown()
        self._library_ok = False

    # --- discovery ------------------------------------------------------------------------

    def _supported(self, fn: Callable[[], Any]) -> bool:
        n = self._module()
        try:
            fn()
        except n.NVMLError:
            return False
        return True

    def _probe(self, index: int, handle: Any, driver: str) -> _Device:
        """Ask each capability once; whatever raises here is left out for good."""
        n = self._module()
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
            if self._supported(check):
                caps.add(capability)
        if self._process_utilization_supported(handle):
            caps.add(Capability.PROCESS_UTILIZATION)

        device = _Device(info=None, handle=handle)  # type: ignore[arg-type]
        if self._field_supported(handle, n.NVML_FI_DEV_POWER_INSTANT):
            caps.add(Capability.POWER_INSTANT)
            device.field_ids.append(n.NVML_FI_DEV_POWER_INSTANT)
            device.field_names.append("power_instant")
        pcie = [n.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, n.NVML_FI_DEV_PCIE_COUNT_RX_BYTES]
        if all(self._field_supported(handle, f) for f in pcie):
            caps.add(Capability.PCIE_COUNTERS)
            device.field_ids += pcie
            device.field_names += ["pcie_tx", "pcie_rx"]
        links = self._active_nvlinks(handle)
        if links:
            tx = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link) for link in links]
            rx = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link) for link in links]
            if self._field_supported(handle, tx[0]) and self._field_supported(handle, rx[0]):
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

        if self._gpm_supported(handle):
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

    def _field_supported(self, handle: Any, field_id: Any) -> bool:
        n = self._module()
        try:
            values = n.nvmlDeviceGetFieldValues(handle, [field_id])
        except n.NVMLError:
            return False
        return bool(values[0].nvmlReturn == n.NVML_SUCCESS)

    def _active_nvlinks(self, handle: Any) -> list[int]:
        n = self._module()
        links = []
        for link in range(getattr(n, "NVML_NVLINK_MAX_LINKS", 18)):
            try:
                if n.nvmlDeviceGetNvLinkState(handle, link) == n.NVML_FEATURE_ENABLED:
                    links.append(link)
            except n.NVMLError:
                continue
        return links

    def _gpm_supported(self, handle: Any) -> bool:
        n = self._module()
        try:
            return bool(n.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except (n.NVMLError, AttributeError):
            return False

    def _process_utilization_supported(self, handle: Any) -> bool:
        """NOT_FOUND only means 'no new sample yet': the call itself works."""
        n = self._module()
        try:
            n.nvmlDeviceGetProcessUtilization(handle, 0)
        except n.NVMLError as exc:
            return bool(exc.value == n.NVML_ERROR_NOT_FOUND)
        return True

    # --- reading --------------------------------------------------------------------------

    def read(self, index: int, plan: ReadPlan) -> Reading:
        n = self._module()
        device = self._devices[index]
        if not self._library_ok or device.lost:
            self._recover(device)
        handle = device.handle
        caps = device.info.capabilities
        failed: list[str] = []

        def call(name: str, fn: Callable[..., Any], *args: Any) -> Any:
            try:
                return fn(*args)
            except n.NVMLError as exc:
                code = getattr(exc, "value", None)
                if code in self._codes(_FATAL_CODES):
                    device.lost = True
                    if code in self._codes(_LIBRARY_GONE_CODES):
                        self._library_ok = False
                    raise DeviceReadError(name, str(exc)) from exc
                failed.append(name)
                return None

        memory = call("nvmlDeviceGetMemoryInfo", n.nvmlDeviceGetMemoryInfo, handle)
        values: dict[str, Any] = {}
        if memory is not None:
            values["memory_used_bytes"] = int(memory.used)
            values["memory_total_bytes"] = int(memory.total)
        if Capability.POWER_AVERAGE in caps:
            mw = call("nvmlDeviceGetPowerUsage", n.nvmlDeviceGetPowerUsage, handle)
            values["power_watts"] = None if mw is None else mw / 1000.0
        if plan.energy_counter and Capability.ENERGY_COUNTER in caps:
            mj = call(
                "nvmlDeviceGetTotalEnergyConsumption",
                n.nvmlDeviceGetTotalEnergyConsumption,
                handle,
            )
            values["energy_counter_joules"] = None if mj is None else mj / 1000.0
        if Capability.UTILIZATION in caps:
            util = call("nvmlDeviceGetUtilizationRates", n.nvmlDeviceGetUtilizationRates, handle)
            if util is not None:
                values["utilization_gpu"] = util.gpu / 100.0
                values["utilization_memory"] = util.memory / 100.0
        if Capability.TEMPERATURE in caps:
            values["temperature_celsius"] = call(
                "nvmlDeviceGetTemperature",
                n.nvmlDeviceGetTemperature,
                handle,
                n.NVML_TEMPERATURE_GPU,
            )
        if Capability.CLOCKS in caps:
            sm = call("nvmlDeviceGetClockInfo", n.nvmlDeviceGetClockInfo, handle, n.NVML_CLOCK_SM)
            mem = call("nvmlDeviceGetClockInfo", n.nvmlDeviceGetClockInfo, handle, n.NVML_CLOCK_MEM)
            values["sm_clock_hertz"] = None if sm is None else sm * 1e6
            values["memory_clock_hertz"] = None if mem is None else mem * 1e6
        if Capability.PSTATE in caps:
            values["pstate"] = call(
                "nvmlDeviceGetPerformanceState", n.nvmlDeviceGetPerformanceState, handle
            )
        if Capability.CLOCK_EVENT_REASONS in caps:
            values["clock_event_reasons"] = call(
                "nvmlDeviceGetCurrentClocksEventReasons",
                n.nvmlDeviceGetCurrentClocksEventReasons,
                handle,
            )
        if device.field_ids:
            fields = call(
                "nvmlDeviceGetFieldValues", n.nvmlDeviceGetFieldValues, handle, device.field_ids
            )
            if fields is not None:
                values.update(self._fields(device, fields, failed))
        if plan.gpm and Capability.GPM in caps:
            values["gpm"] = self._gpm(device, call)
        processes: tuple[ProcessReading, ...] = ()
        if plan.processes and Capability.PROCESSES in caps:
            processes = self._processes(device, plan, call)
        mig: tuple[MigReading, ...] = ()
        if plan.mig and Capability.MIG in caps:
            mig = self._mig(device, call)
        return Reading(
            timestamp=self._clock(),
            processes=processes,
            mig_devices=mig,
            failed_calls=tuple(failed),
            **values,
        )

    def _codes(self, names: tuple[str, ...]) -> set[int]:
        n = self._module()
        return {getattr(n, name) for name in names if hasattr(n, name)}

    def _recover(self, device: _Device) -> None:
        """Come back by ourselves after a driver reload or a GPU that fell off the bus."""
        n = self._module()
        with self._init_lock:
            if not self._library_ok:
                with contextlib.suppress(n.NVMLError):
                    n.nvmlShutdown()
                try:
                    n.nvmlInit()
                except n.NVMLError as exc:
                    raise DeviceReadError("nvmlInit", str(exc)) from exc
                self._library_ok = True
                for other in self._devices.values():
                    other.lost = True
        try:
            device.handle = n.nvmlDeviceGetHandleByUUID(device.info.uuid)
        except n.NVMLError as exc:
            raise DeviceReadError("nvmlDeviceGetHandleByUUID", str(exc)) from exc
        device.lost = False
        device.gpm_primed = False

    def _fields(self, device: _Device, fields: Any, failed: list[str]) -> dict[str, Any]:
        n = self._module()
        out: dict[str, Any] = {}
        nvlink: dict[str, int] = {}
        for name, value in zip(device.field_names, fields, strict=False):
            if value.nvmlReturn != n.NVML_SUCCESS:
                failed.append(f"nvmlDeviceGetFieldValues:{name}")
                continue
            number = _field_number(n, value)
            if name == "power_instant":
                out["power_instant_watts"] = number / 1000.0
            elif name == "pcie_tx":
                out["pcie_tx_bytes"] = int(number)
            elif name == "pcie_rx":
                out["pcie_rx_bytes"] = int(number)
            else:  # NVLink data throughput counters are in KiB, one per link
                nvlink[name] = nvlink.get(name, 0) + int(number) * 1024
        if "nvlink_tx" in nvlink:
            out["nvlink_tx_bytes"] = nvlink["nvlink_tx"]
        if "nvlink_rx" in nvlink:
            out["nvlink_rx_bytes"] = nvlink["nvlink_rx"]
        return out

    def _gpm(self, device: _Device, call: Callable[..., Any]) -> GpmReading | None:
        """Take a sample; report the interval since the last one (none on the first read)."""
        n = self._module()
        previous, current = device.gpm_samples
        if call("nvmlGpmSampleGet", n.nvmlGpmSampleGet, device.handle, current) is None:
            device.gpm_primed = False
            return None
        device.gpm_samples = [current, previous]
        if not device.gpm_primed:
            device.gpm_primed = True
            return None
        request = device.gpm_request
        request.sample1 = previous
        request.sample2 = current
        if call("nvmlGpmMetricsGet", n.nvmlGpmMetricsGet, request) is None:
            return None
        values: dict[str, float] = {}
        for i, (_metric_id, attr, scale) in enumerate(device.gpm_ids):
            metric = request.metrics[i]
            if metric.nvmlReturn == n.NVML_SUCCESS and not math.isnan(metric.value):
                values[attr] = metric.value * scale
        return GpmReading(**values)

    def _processes(
        self, device: _Device, plan: ReadPlan, call: Callable[..., Any]
    ) -> tuple[ProcessReading, ...]:
        n = self._module()
        raw = call(
            "nvmlDeviceGetComputeRunningProcesses",
            n.nvmlDeviceGetComputeRunningProcesses,
            device.handle,
        )
        if not raw:
            device.proc_util.clear()
            return ()
        policy = plan.process_utilization
        wanted = Capability.PROCESS_UTILIZATION in device.info.capabilities and (
            policy is ProcessUtilizationPolicy.ALWAYS
            or (policy is ProcessUtilizationPolicy.WHEN_SHARED and len(raw) > 1)
        )
        if wanted:
            self._update_process_utilization(device)
        else:
            device.proc_util.clear()
        live = {p.pid for p in raw}
        for pid in list(device.proc_util):
            if pid not in live:
                del device.proc_util[pid]
        out = []
        for p in raw:
            sm, mem = device.proc_util.get(p.pid, (None, None))
            out.append(
                ProcessReading(
                    pid=int(p.pid),
                    used_memory_bytes=None if p.usedGpuMemory is None else int(p.usedGpuMemory),
                    command=self._command(int(p.pid)),
                    sm_utilization=sm,
                    memory_utilization=mem,
                    gpu_instance_id=_optional_instance_id(p),
                )
            )
        return tuple(out)

    def _update_process_utilization(self, device: _Device) -> None:
        n = self._module()
        try:
            samples = n.nvmlDeviceGetProcessUtilization(device.handle, device.proc_util_seen_us)
        except n.NVMLError as exc:
            if exc.value != n.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: no new sample; keep the last
                device.proc_util.clear()
            return
        newest: dict[int, Any] = {}
        for sample in samples:
            if sample.pid not in newest or sample.timeStamp > newest[sample.pid].timeStamp:
                newest[sample.pid] = sample
            device.proc_util_seen_us = max(device.proc_util_seen_us, int(sample.timeStamp))
        for pid, sample in newest.items():
            device.proc_util[int(pid)] = (sample.smUtil / 100.0, sample.memUtil / 100.0)

    def _command(self, pid: int) -> str:
        """Process names are cached: /proc reads every cycle would cost more than NVML."""
        name = self._commands.get(pid)
        if name is None:
            try:
                name = psutil.Process(pid).name()
            except (psutil.Error, OSError):
                name = ""
            if len(self._commands) > 4096:
                self._commands.clear()
            self._commands[pid] = name
        return name

    def _mig(self, device: _Device, call: Callable[..., Any]) -> tuple[MigReading, ...]:
        n = self._module()
        count = call(
            "nvmlDeviceGetMaxMigDeviceCount", n.nvmlDeviceGetMaxMigDeviceCount, device.handle
        )
        out = []
        for i in range(count or 0):
            try:
                handle = n.nvmlDeviceGetMigDeviceHandleByIndex(device.handle, i)
            except n.NVMLError:
                continue  # an empty slot answers NOT_FOUND
            reading = call("nvmlDeviceGetMigDeviceInfo", self._describe_mig, handle)
            if reading is not None:
                out.append(reading)
        return tuple(out)

    def _describe_mig(self, handle: Any) -> MigReading:
        n = self._module()
        memory = n.nvmlDeviceGetMemoryInfo(handle)
        return MigReading(
            gpu_instance_id=int(n.nvmlDeviceGetGpuInstanceId(handle)),
            compute_instance_id=int(n.nvmlDeviceGetComputeInstanceId(handle)),
            uuid=str(n.nvmlDeviceGetUUID(handle)),
            profile=mig_profile_from_name(str(n.nvmlDeviceGetName(handle))),
            memory_used_bytes=int(memory.used),
            memory_total_bytes=int(memory.total),
        )


def _field_number(n: ModuleType, value: Any) -> float:
    kind = value.valueType
    union = value.value
    if kind == n.NVML_VALUE_TYPE_DOUBLE:
        return float(union.dVal)
    if kind == n.NVML_VALUE_TYPE_UNSIGNED_INT:
        return float(union.uiVal)
    if kind == n.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return float(union.ulVal)
    if kind == n.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(union.sllVal)
    if kind == n.NVML_VALUE_TYPE_SIGNED_INT:
        return float(union.siVal)
    if kind == getattr(n, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6):
        return float(union.usVal)
    return float(union.ullVal)


def _optional_instance_id(process: Any) -> int | None:
    gi = getattr(process, "gpuInstanceId", None)
    if gi is None or gi >= 0xFFFFFFFF:
        return None
    return int(gi)


def mig_profile_from_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3 MIG 1g.10gb' -> '1g.10gb' (the profile dcgm-exporter shows)."""
    marker = " MIG "
    return name.split(marker, 1)[1].strip() if marker in name else name
