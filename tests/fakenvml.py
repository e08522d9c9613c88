"""A stand-in `pynvml` module that serves the recorded H100 values.

It reuses the real nvidia-ml-py constants, ctypes structures and exception classes, and
replaces only the functions that would call libnvidia-ml: the exporter's real
`backends/nvml.py` runs unchanged against it. Values come from `trace_a.jsonl` (one sample
per cursor position) and `probe.json`; NOT_SUPPORTED is raised where the recording says
so. Faults can be injected: library missing, a GPU lost, a call that hangs, NaN from GPM,
an energy counter reset.

The driver's power-sample buffer (`nvmlDeviceGetSamples`, one sample every 20 ms, about
2.4 s kept) is served from the recording's `power_samples` where it has them (trace_a2),
else drawn every 20 ms from its instant power. With `costs` (tests/fixtures/nvml_costs/
h100.json) each call burns the CPU that call took on a real H100, so that a benchmark
without a GPU predicts the exporter's real per-GPU CPU.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import json
import math
import struct
import threading
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pynvml as real

from fakenvml_nvitop import NvitopCalls

FIXTURES = Path(__file__).parent / "fixtures" / "h100"
COSTS = Path(__file__).parent / "fixtures" / "nvml_costs"
SAMPLE_PERIOD_US = 20_000  # the driver samples power at 50 Hz
SAMPLE_BUFFER = 120  # about 2.4 s of samples are kept

_FIELD_KEYS = {
    real.NVML_FI_DEV_POWER_INSTANT: "power_instant",
    real.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: "pcie_tx_bytes",
    real.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: "pcie_rx_bytes",
    real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: "nvlink_tp_data_tx",
    real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: "nvlink_tp_data_rx",
    real.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: "total_energy",
    real.NVML_FI_DEV_POWER_AVERAGE: "power_average",
}

_GPM_KEYS = {
    real.NVML_GPM_METRIC_GRAPHICS_UTIL: "graphics_util",
    real.NVML_GPM_METRIC_SM_UTIL: "sm_util",
    real.NVML_GPM_METRIC_SM_OCCUPANCY: "sm_occupancy",
    real.NVML_GPM_METRIC_INTEGER_UTIL: "integer_util",
    real.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "any_tensor_util",
    real.NVML_GPM_METRIC_HMMA_TENSOR_UTIL: "hmma_tensor_util",
    real.NVML_GPM_METRIC_DRAM_BW_UTIL: "dram_bw_util",
    real.NVML_GPM_METRIC_FP32_UTIL: "fp32_util",
    real.NVML_GPM_METRIC_FP16_UTIL: "fp16_util",
    real.NVML_GPM_METRIC_PCIE_TX_PER_SEC: "pcie_tx_mib_s",
    real.NVML_GPM_METRIC_PCIE_RX_PER_SEC: "pcie_rx_mib_s",
    real.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: "nvlink_rx_mib_s",
    real.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: "nvlink_tx_mib_s",
}


def load_trace(path: Path = FIXTURES / "trace_a.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_probe() -> dict[str, Any]:
    return json.loads((FIXTURES / "probe.json").read_text())


def _power_samples(trace: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(timestamp µs, milliwatts, row that first holds it): the recorded driver samples
    where the trace has them, else one every 20 ms interpolated from instant power."""
    if any(isinstance(s.get("power_samples"), list) for s in trace):
        return [
            (int(stamp), int(mw), row)
            for row, s in enumerate(trace)
            if isinstance(s.get("power_samples"), list)
            for stamp, mw in s["power_samples"]
        ]
    points = [
        (float(s["t"]), float(s["fields"]["power_instant"]["value"]))
        for s in trace
        if "value" in (s.get("fields", {}).get("power_instant") or {})
    ]
    out: list[tuple[int, int, int]] = []
    if len(points) < 2:
        return out
    stamp = int(points[0][0] * 1e6)
    row = 0
    times = [t for t, _ in points]
    while stamp <= int(points[-1][0] * 1e6):
        t = stamp / 1e6
        i = min(max(bisect.bisect_right(times, t) - 1, 0), len(points) - 2)
        (t0, p0), (t1, p1) = points[i], points[i + 1]
        mw = p0 + (p1 - p0) * (t - t0) / (t1 - t0) if t1 > t0 else p1
        while row + 1 < len(trace) and float(trace[row]["t"]) < t:
            row += 1
        out.append((stamp, int(mw), row))
        stamp += SAMPLE_PERIOD_US
    return out


_SAMPLE = struct.Struct("@QI4x")  # c_nvmlSample_t: timeStamp, then the value union


def sample_array(samples: list[tuple[int, int]]) -> list[Any]:
    """c_nvmlSample_t structures holding (µs, mW), as pynvml returns them (a slice of a
    ctypes array), built from bytes: the stand-in's own Python must stay well under the
    0.05 ms the real call costs, or the bench would charge it to the exporter."""
    raw = b"".join(_SAMPLE.pack(int(stamp), int(mw)) for stamp, mw in samples)
    array = (real.c_nvmlSample_t * len(samples)).from_buffer_copy(raw)
    return array[0 : len(samples)]


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index


class _Proc:
    def __init__(self, pid: int, used: int) -> None:
        self.pid = pid
        self.usedGpuMemory = used
        self.gpuInstanceId = 0xFFFFFFFF
        self.computeInstanceId = 0xFFFFFFFF


class FakeNvml(NvitopCalls, types.ModuleType):
    """`devices` GPUs, all replaying the same recording from one shared cursor.

    `_PrintableStructure` without `_nvmlGetFunctionPointer` makes nvitop skip the patches
    through which it calls libnvidia-ml by ctypes pointer, so that it too reads the
    stand-in (by these pynvml names)."""

    def __init__(
        self,
        trace: list[dict[str, Any]] | None = None,
        probe: dict[str, Any] | None = None,
        devices: int = 1,
    ) -> None:
        super().__init__("pynvml")
        for name in dir(real):
            if name.startswith(("NVML", "c_nvml", "nvmlClocksEventReason", "struct_c_nvml")):
                setattr(self, name, getattr(real, name))
        for name in ("nvmlExceptionClass", "_PrintableStructure", "nvmlStructToFriendlyObject"):
            setattr(self, name, getattr(real, name))
        self.trace = trace if trace is not None else load_trace()
        self.probe = probe if probe is not None else load_probe()
        self.device_count = devices
        self.cursor = 0
        self.calls: Counter[str] = Counter()
        self.charged: Counter[str] = Counter()  # cost-table entries charged (see load_costs)
        self.initialized = False
        self.library_missing = False
        self.lost: set[int] = set()
        self.hang: dict[int, threading.Event] = {}
        self.nan_gpm: set[str] = set()
        self.energy_offset_mj = 0
        self.mig: dict[int, list[dict[str, Any]]] = {}
        self._gpm_taken: dict[int, int] = {}
        self._next_sample = 1
        self.costs: dict[str, float] = {}  # call -> CPU ms burnt per call (see load_costs)
        self._local = threading.local()  # per calling thread: the CPU the call owes
        self.default_cost_ms = 0.0
        self._power = _power_samples(self.trace)
        self._power_times = [int(stamp) for stamp, _mw, _row in self._power]
        self._power_rows = [row for _stamp, _mw, row in self._power]

    def load_costs(self, path: Path = COSTS / "h100.json") -> None:
        """Each call then costs the CPU it took on the real GPU, and no more: the table was
        measured around pynvml's own calls (its Python wrapper included), so the stand-in's
        Python that plays the recording counts towards the call's cost instead of adding
        to it (one call costs max(measured, the stand-in's own CPU))."""
        table = json.loads(path.read_text())
        self.costs = {k: float(v) for k, v in table["calls_ms"].items()}
        self.default_cost_ms = float(table["default_ms"])
        for name in dir(type(self)):
            if name.startswith("nvml"):
                setattr(self, name, functools.partial(self._metered, getattr(self, name)))

    def cost_ms(self, charged: dict[str, int]) -> float:
        """The CPU the cost table charges for these entries (a `charged` count or a
        difference of two), in ms."""
        return sum(n * self.costs.get(k, self.default_cost_ms) for k, n in charged.items())

    def _metered(self, call: Any, *args: Any) -> Any:
        local = self._local
        outer = not getattr(local, "depth", 0)
        if outer:
            local.start, local.debt, local.depth = time.thread_time(), 0.0, 0
        local.depth += 1
        try:
            return call(*args)
        finally:
            local.depth -= 1
            if outer:
                until = local.start + local.debt
                while time.thread_time() < until:
                    pass

    # --- plumbing -------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        return self.trace[self.cursor]

    def clock(self) -> float:
        return float(self.sample()["t"])

    def _raise(self, code: int) -> None:
        raise real.NVMLError(code)

    def _burn(self, name: str) -> None:
        """Owe the call's measured CPU time (thread time: what the OS counts), spent when the
        call returns (`_metered`)."""
        if self.costs:
            self._local.debt += self.costs.get(name, self.default_cost_ms) / 1000.0
            self.charged[name] += 1

    def _enter(self, name: str, handle: Any = None) -> None:
        self.calls[name] += 1
        self._burn(name)
        if not self.initialized:
            self._raise(real.NVML_ERROR_UNINITIALIZED)
        if handle is not None and not isinstance(handle, dict):  # dict: a MIG device
            index = handle.index if isinstance(handle, _Handle) else handle
            if index in self.hang:
                self.hang[index].wait()
            if index in self.lost:
                self._raise(real.NVML_ERROR_GPU_IS_LOST)

    def _uuid(self, index: int) -> str:
        base = self.probe["static"]["uuid"]
        return base if index == 0 else f"{base[:-2]}{index:02d}"

    # --- library --------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.library_missing:
            self._raise(real.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return str(self.probe["driver"])

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return self.device_count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex", index)
        return _Handle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for index in range(self.device_count):
            if self._uuid(index) == uuid:
                self._enter("nvmlDeviceGetHandleByUUID", index)
                return _Handle(index)
        self._raise(real.NVML_ERROR_NOT_FOUND)
        raise AssertionError

    # --- identity -------------------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._enter("nvmlDeviceGetName", handle)
        if isinstance(handle, dict):
            return f"{self.probe['static']['name']} MIG {handle['profile']}"
        return str(self.probe["static"]["name"])

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        if isinstance(handle, dict):
            return str(handle["uuid"])
        return self._uuid(handle.index)

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> Any:
        self._enter("nvmlDeviceGetPciInfo", handle)
        return types.SimpleNamespace(busId=self.probe["static"]["pci"]["busId"])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return int(self.probe["static"]["enforced_power_limit_mw"])

    def nvmlDeviceGetArchitecture(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetArchitecture", handle)
        return int(self.probe["static"]["arch"])

    def nvmlDeviceGetMigMode(self, handle: _Handle) -> tuple[int, int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        on = 1 if self.mig.get(handle.index) else 0
        return on, on

    # --- readings -------------------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        if isinstance(handle, dict):  # a MIG device
            self._enter("nvmlDeviceGetMemoryInfo")
            return types.SimpleNamespace(
                used=handle["used"], total=handle["total"], free=handle["total"] - handle["used"]
            )
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        s = self.sample()
        return types.SimpleNamespace(
            used=s["mem_used"], total=s["mem_total"], free=s["mem_total"] - s["mem_used"]
        )

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return int(self.sample()["power_mw"])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        return int(self.sample()["energy_mj"]) + self.energy_offset_mj

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        s = self.sample()
        return types.SimpleNamespace(gpu=s["util_gpu"], memory=s["util_mem"])

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        return int(self.sample()["temp_c"])

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        key = "sm_clock_mhz" if clock == real.NVML_CLOCK_SM else "mem_clock_mhz"
        return int(self.sample()[key])

    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetPerformanceState", handle)
        return int(self.sample()["pstate"])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return int(self.sample()["clock_event_reasons"])

    def nvmlDeviceGetSamples(self, handle: _Handle, kind: int, last_seen_us: int) -> Any:
        """Power samples newer than `last_seen_us` up to the current row, from a buffer of
        the newest SAMPLE_BUFFER; NOT_FOUND when there is none newer."""
        self._enter("nvmlDeviceGetSamples", handle)
        if kind != real.NVML_TOTAL_POWER_SAMPLES:
            self._raise(real.NVML_ERROR_NOT_SUPPORTED)
        end = bisect.bisect_right(self._power_rows, self.cursor)
        newer = bisect.bisect_right(self._power_times, last_seen_us, 0, end)
        start = max(newer, end - SAMPLE_BUFFER)
        if start >= end:
            self._raise(real.NVML_ERROR_NOT_FOUND)
        return real.NVML_VALUE_TYPE_UNSIGNED_INT, sample_array(
            [(stamp, mw) for stamp, mw, _row in self._power[start:end]]
        )

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: list[Any]) -> Any:
        self.calls["nvmlDeviceGetFieldValues"] += 1
        for requested in field_ids:
            key = _FIELD_KEYS.get(requested[0] if isinstance(requested, tuple) else requested, "")
            self._burn("nvmlDeviceGetFieldValues:" + ("pcie" if "pcie" in key else key))
        self._enter("nvmlDeviceGetFieldValues:call", handle)
        values = (real.c_nvmlFieldValue_t * len(field_ids))()
        fields = self.sample()["fields"]
        for i, requested in enumerate(field_ids):
            field_id = requested[0] if isinstance(requested, tuple) else requested
            values[i].fieldId = field_id
            entry = fields.get(_FIELD_KEYS.get(field_id, ""), {"nvml_return": 3})
            if "nvml_return" in entry:
                values[i].nvmlReturn = entry["nvml_return"]
                continue
            values[i].nvmlReturn = real.NVML_SUCCESS
            values[i].valueType = entry["type"]
            if entry["type"] == real.NVML_VALUE_TYPE_UNSIGNED_INT:
                values[i].value.uiVal = entry["value"]
            else:
                values[i].value.ullVal = entry["value"]
        return values

    def nvmlDeviceGetNvLinkState(self, handle: _Handle, link: int) -> int:
        self._enter("nvmlDeviceGetNvLinkState", handle)
        state = self.probe["nvlink_state"].get(str(link), {"code": 3})
        if "code" in state:
            self._raise(state["code"])
        return int(state["state"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[_Proc]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return [_Proc(p["pid"], p["used_mem"]) for p in self.sample()["procs"]]

    def nvmlDeviceGetProcessUtilization(self, handle: _Handle, last_seen_us: int) -> list[Any]:
        self._enter("nvmlDeviceGetProcessUtilization", handle)
        util = self.sample()["proc_util"]
        if isinstance(util, dict):
            self._raise(util["code"])
        out = []
        for entry in util:
            if entry["ts"] <= last_seen_us:
                continue
            sample = real.c_nvmlProcessUtilizationSample_t()
            sample.pid, sample.timeStamp = entry["pid"], entry["ts"]
            sample.smUtil, sample.memUtil = entry["sm"], entry["mem"]
            out.append(sample)
        if not out:
            self._raise(real.NVML_ERROR_NOT_FOUND)
        return out

    # --- GPM ------------------------------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, handle: _Handle) -> Any:
        self._enter("nvmlGpmQueryDeviceSupport", handle)
        return types.SimpleNamespace(
            isSupportedDevice=self.probe["static"]["gpm_support"]["isSupportedDevice"]
        )

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        token = self._next_sample
        self._next_sample += 1
        return ctypes.cast(ctypes.c_void_p(token * 16), real.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.calls["nvmlGpmSampleFree"] += 1

    @staticmethod
    def _token(sample: Any) -> int:
        return int(ctypes.cast(sample, ctypes.c_void_p).value or 0)

    def nvmlGpmSampleGet(self, handle: _Handle, sample: Any) -> Any:
        self._enter("nvmlGpmSampleGet", handle)
        self._gpm_taken[self._token(sample)] = self.cursor
        return sample

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        """Values over the interval ending at sample2's cursor, as the recording holds them."""
        self._enter("nvmlGpmMetricsGet")
        cursor = self._gpm_taken[self._token(request.sample2)]
        gpm = self.trace[cursor]["gpm"]
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            key = _GPM_KEYS.get(metric.metricId)
            if key is None or key not in gpm:
                metric.nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
                continue
            metric.nvmlReturn = real.NVML_SUCCESS
            metric.value = math.nan if key in self.nan_gpm else gpm[key]
        return request

    # --- MIG (synthetic: MIG was off on the recorded machine) -----------------------------

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        return 7 if self.mig.get(handle.index) else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, i: int) -> dict[str, Any]:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        devices = self.mig.get(handle.index, [])
        if i >= len(devices):
            self._raise(real.NVML_ERROR_NOT_FOUND)
        return devices[i]

    def nvmlDeviceGetGpuInstanceId(self, mig: dict[str, Any]) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId")
        return int(mig["gi"])

    def nvmlDeviceGetComputeInstanceId(self, mig: dict[str, Any]) -> int:
        self._enter("nvmlDeviceGetComputeInstanceId")
        return int(mig["ci"])
