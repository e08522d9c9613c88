"""The NVML calls nvitop-exporter makes that greenops-exporter does not, for the stand-in.

Each answers with the recorded value where `probe.json` holds one, and NOT_SUPPORTED where
the recording has none: the stand-in never invents a reading. (nvitop's own ctypes patches
are skipped on the stand-in, see `fakenvml.FakeNvml`: it then calls these pynvml names.)
"""

from __future__ import annotations

from typing import Any

import pynvml as real


class NvitopCalls:
    """Mixed into `FakeNvml`, whose `_enter`, `probe`, `mig` and `nvmlInit` these use."""

    probe: dict[str, Any]
    mig: dict[int, list[dict[str, Any]]]

    def _enter(self, name: str, handle: Any = None) -> None:
        raise NotImplementedError

    def nvmlInit(self) -> None:
        raise NotImplementedError

    def _unrecorded(self, name: str, handle: Any = None) -> Any:
        self._enter(name, handle)
        raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.nvmlInit()

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return int(self.probe["cuda_driver_version"])

    def nvmlDeviceIsMigDeviceHandle(self, handle: Any) -> int:
        self._enter("nvmlDeviceIsMigDeviceHandle")
        return 1 if isinstance(handle, dict) else 0  # dicts are the stand-in's MIG devices

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit", handle)
        return int(self.probe["static"]["power_limit_mw"])

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        # recorded only as a latency (about 20 ms), never as a value
        return self._unrecorded("nvmlDeviceGetPcieThroughput", handle)

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> Any:
        return self._unrecorded("nvmlDeviceGetEncoderUtilization", handle)

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> Any:
        return self._unrecorded("nvmlDeviceGetDecoderUtilization", handle)

    def nvmlDeviceGetFanSpeed(self, handle: Any) -> int:
        return self._unrecorded("nvmlDeviceGetFanSpeed", handle)  # an SXM board has no fan

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> Any:
        return self._unrecorded("nvmlDeviceGetGraphicsRunningProcesses", handle)
