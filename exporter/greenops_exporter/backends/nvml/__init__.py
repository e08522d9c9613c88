"""Real GPUs through NVML (nvidia-ml-py): probe once, then cheap reads on every cycle.

Every call here blocks (ctypes into libnvidia-ml), so the collection loop runs `read` in a
worker thread with a deadline. The module object is injected so that the tests can run this
exact code against recorded H100 values.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from greenops_exporter.backends.base import (
    BackendUnavailable,
    Capability,
    DeviceInfo,
    DeviceReadError,
    MigReading,
    ProcessReading,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.nvml.probe import Device, probe_device
from greenops_exporter.backends.nvml.reads import (
    field_number,
    mig_profile_from_name,
    read_gpm,
    read_mig,
    read_power_samples,
    read_processes,
)

__all__ = ["NvmlBackend", "mig_profile_from_name"]

log = logging.getLogger(__name__)

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


log = logging.getLogger(__name__)


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
        self._devices: dict[int, Device] = {}
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
                device = probe_device(n, index, handle, str(driver))
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
        samples: tuple[tuple[float, float], ...] = ()
        if Capability.POWER_SAMPLES in caps:
            samples = read_power_samples(n, device, call)
            if samples:
                device.last_sample_watts = samples[-1][1]
            values["power_instant_watts"] = device.last_sample_watts
        if plan.gpm and Capability.GPM in caps:
            values["gpm"] = read_gpm(n, device, call)
        processes: tuple[ProcessReading, ...] = ()
        if plan.processes and Capability.PROCESSES in caps:
            processes = read_processes(n, device, plan, call, self._command)
        mig: tuple[MigReading, ...] = ()
        if plan.mig and Capability.MIG in caps:
            mig = read_mig(n, device, call)
        return Reading(
            timestamp=self._clock(),
            processes=processes,
            mig_devices=mig,
            power_samples=samples,
            failed_calls=tuple(failed),
            **values,
        )

    def _codes(self, names: tuple[str, ...]) -> set[int]:
        n = self._module()
        return {getattr(n, name) for name in names if hasattr(n, name)}

    def _recover(self, device: Device) -> None:
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

    def _fields(self, device: Device, fields: Any, failed: list[str]) -> dict[str, Any]:
        n = self._module()
        out: dict[str, Any] = {}
        nvlink: dict[str, int] = {}
        for name, value in zip(device.field_names, fields, strict=False):
            if value.nvmlReturn != n.NVML_SUCCESS:
                failed.append(f"nvmlDeviceGetFieldValues:{name}")
                continue
            number = field_number(n, value)
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
