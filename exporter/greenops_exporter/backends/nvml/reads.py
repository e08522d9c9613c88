"""The per-cycle reads that need more than one call: GPM, processes, MIG, power samples."""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

from greenops_exporter.backends.base import (
    Capability,
    GpmReading,
    MigReading,
    ProcessReading,
    ProcessUtilizationPolicy,
    ReadPlan,
)
from greenops_exporter.backends.nvml.probe import Device

_UINT = struct.Struct("@I")
_DOUBLE = struct.Struct("@d")
_ULONGLONG = struct.Struct("@Q")
_ULONG = struct.Struct("@L")


def read_gpm(n: ModuleType, device: Device, call: Callable[..., Any]) -> GpmReading | None:
    """Take a sample; report the interval since the last one (none on the first read)."""
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
    layout = type(request.metrics[0])
    raw = bytes(request.metrics)  # see _records: one copy, not three attribute reads each
    at_return, at_value = layout.nvmlReturn.offset, layout.value.offset
    for i, (_metric_id, attr, scale) in enumerate(device.gpm_ids):
        base = i * ctypes.sizeof(layout)
        (code,) = _UINT.unpack_from(raw, base + at_return)
        (value,) = _DOUBLE.unpack_from(raw, base + at_value)
        if code == n.NVML_SUCCESS and not math.isnan(value):
            values[attr] = value * scale
    return GpmReading(**values)


def read_processes(
    n: ModuleType,
    device: Device,
    plan: ReadPlan,
    call: Callable[..., Any],
    command: Callable[[int], str],
) -> tuple[ProcessReading, ...]:
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
        update_process_utilization(n, device)
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
                command=command(int(p.pid)),
                sm_utilization=sm,
                memory_utilization=mem,
                gpu_instance_id=optional_instance_id(p),
            )
        )
    return tuple(out)


def read_power_samples(
    n: ModuleType, device: Device, call: Callable[..., Any]
) -> tuple[tuple[float, float], ...]:
    """The driver's power samples since the newest one already read (one call, ~50 Hz).

    NOT_FOUND means no new sample since then: an empty answer, not a failure."""
    answer = call("nvmlDeviceGetSamples", _samples_since, n, device.handle, device.power_seen_us)
    if answer is None:
        return ()
    kind, samples = answer
    decoded = _records(n, kind, samples)
    seen = device.power_seen_us
    out = [(stamp / 1e6, value / 1000.0) for stamp, value in decoded if stamp > seen]
    if out:
        device.power_seen_us = max(stamp for stamp, _value in decoded)
    out.sort()
    return tuple(out)


def _records(n: ModuleType, kind: int, samples: list[Any]) -> list[tuple[int, float]]:
    """(timestamp µs, value) of each sample, read from the structures' memory.

    pynvml's structures answer every attribute through a Python `__getattribute__`; at 50
    samples a second per GPU, two attributes each, that was the largest part of a read's
    own CPU (issue 18, py-spy). Their bytes come out in one C call, and ctypes says where
    each field lies, so no offset is assumed here."""
    if not samples:
        return []
    layout = type(samples[0])
    value_at = layout.sampleValue.offset
    number = {  # the union member the value type names; any other as unsigned int
        n.NVML_VALUE_TYPE_DOUBLE: _DOUBLE,
        n.NVML_VALUE_TYPE_UNSIGNED_LONG: _ULONG,
        n.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: _ULONGLONG,
    }.get(kind, _UINT)
    out = []
    for sample in samples:
        raw = bytes(sample)
        (stamp,) = _ULONGLONG.unpack_from(raw, layout.timeStamp.offset)
        (value,) = number.unpack_from(raw, value_at)
        out.append((int(stamp), float(value)))
    return out


def _samples_since(n: ModuleType, handle: Any, seen_us: int) -> tuple[int, list[Any]]:
    try:
        kind, samples = n.nvmlDeviceGetSamples(handle, n.NVML_TOTAL_POWER_SAMPLES, seen_us)
    except n.NVMLError as exc:
        if exc.value == n.NVML_ERROR_NOT_FOUND:
            return 0, []
        raise
    return int(kind), list(samples)


def update_process_utilization(n: ModuleType, device: Device) -> None:
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


def read_mig(n: ModuleType, device: Device, call: Callable[..., Any]) -> tuple[MigReading, ...]:
    count = call("nvmlDeviceGetMaxMigDeviceCount", n.nvmlDeviceGetMaxMigDeviceCount, device.handle)
    out = []
    for i in range(count or 0):
        try:
            handle = n.nvmlDeviceGetMigDeviceHandleByIndex(device.handle, i)
        except n.NVMLError:
            continue  # an empty slot answers NOT_FOUND
        reading = call("nvmlDeviceGetMigDeviceInfo", describe_mig, n, handle)
        if reading is not None:
            out.append(reading)
    return tuple(out)


def describe_mig(n: ModuleType, handle: Any) -> MigReading:
    memory = n.nvmlDeviceGetMemoryInfo(handle)
    return MigReading(
        gpu_instance_id=int(n.nvmlDeviceGetGpuInstanceId(handle)),
        compute_instance_id=int(n.nvmlDeviceGetComputeInstanceId(handle)),
        uuid=str(n.nvmlDeviceGetUUID(handle)),
        profile=mig_profile_from_name(str(n.nvmlDeviceGetName(handle))),
        memory_used_bytes=int(memory.used),
        memory_total_bytes=int(memory.total),
    )


def field_number(n: ModuleType, value: Any) -> float:
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


def optional_instance_id(process: Any) -> int | None:
    gi = getattr(process, "gpuInstanceId", None)
    if gi is None or gi >= 0xFFFFFFFF:
        return None
    return int(gi)


def mig_profile_from_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3 MIG 1g.10gb' -> '1g.10gb' (the profile dcgm-exporter shows)."""
    marker = " MIG "
    return name.split(marker, 1)[1].strip() if marker in name else name
