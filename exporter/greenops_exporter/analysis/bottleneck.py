"""What holds each GPU back: idle, compute, memory, io or overhead (unknown without data).

`utilization.gpu` only says a kernel ran: it reads 99 % while only PCIe copies run and 37 %
while tiny kernels leave the SMs idle (recorded H100). So the class comes from GPM (SM
activity, tensor and DRAM activity, PCIe rates) where the GPU has it, and from the coarse
signals (utilisation, memory-copy utilisation, PCIe counters) only where it does not.
The default thresholds are justified against the recorded phases in the README.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from greenops_exporter.backends.base import Reading

GIB = 2**30


class BottleneckClass(enum.StrEnum):
    IDLE = "idle"
    COMPUTE = "compute"
    MEMORY = "memory"
    IO = "io"
    OVERHEAD = "overhead"
    UNKNOWN = "unknown"  # no activity signal: no verdict, and no waste booked


class Signals(enum.StrEnum):
    GPM = "gpm"
    BASIC = "basic"


@dataclass(frozen=True, slots=True)
class Thresholds:
    # with GPM
    memory_dram_active: float = 0.6  # memory copy: 0.90; matmul: 0.26; inference: 0.27
    compute_sm_active: float = 0.5  # matmul: 0.96; batch-1 inference: 0.29; tiny kernels: 0.0003
    compute_tensor_active: float = 0.3  # matmul: 0.93; batch-256 inference: 0.21
    io_bytes_per_second: float = 1.0 * GIB  # h2d copy: 55 GiB/s; tiny kernels: 0.26 GiB/s
    io_sm_active_max: float = 0.1
    busy_activity: float = 0.05  # a kernel ran in more than 5 % of the interval
    # without GPM
    basic_memory_utilization: float = 0.6  # memory copy: 1.00; matmul and inference: ~0.34
    basic_compute_utilization: float = 0.8  # matmul: 1.00; batch-1 inference: 0.56
    basic_io_memory_utilization_max: float = 0.2  # h2d copy: 0.02


def engine_activity(reading: Reading) -> float | None:
    """The share of time an engine ran: DCGM's profiled GR_ENGINE_ACTIVE where the source
    has it (measured, not NVML's sampled utilisation), else utilisation; None when unknown."""
    g = reading.gpm
    if g is not None and g.graphics_active is not None:
        return g.graphics_active
    return reading.utilization_gpu


def classify(
    reading: Reading,
    pcie_bytes_per_second: float | None,
    t: Thresholds = Thresholds(),
) -> tuple[BottleneckClass, Signals | None]:
    """The class of the interval that ended with `reading`, and which signals decided it.

    UNKNOWN (and no signals) where nothing says whether the GPU worked: a missing value is
    not a zero, and an idle verdict would book the energy as waste."""
    g = reading.gpm
    if g is not None and g.sm_active is not None:
        util = reading.utilization_gpu or 0.0
        sm = g.sm_active
        if (g.dram_active or 0.0) >= t.memory_dram_active:
            return BottleneckClass.MEMORY, Signals.GPM
        if sm >= t.compute_sm_active or (g.tensor_active or 0.0) >= t.compute_tensor_active:
            return BottleneckClass.COMPUTE, Signals.GPM
        gpm_pcie = (g.pcie_tx_bytes_per_second or 0.0) + (g.pcie_rx_bytes_per_second or 0.0)
        if gpm_pcie >= t.io_bytes_per_second and sm < t.io_sm_active_max:
            return BottleneckClass.IO, Signals.GPM
        if util >= t.busy_activity or sm >= t.busy_activity:
            return BottleneckClass.OVERHEAD, Signals.GPM
        return BottleneckClass.IDLE, Signals.GPM
    return _basic(reading, pcie_bytes_per_second, t)


def _basic(
    reading: Reading, pcie_bytes_per_second: float | None, t: Thresholds
) -> tuple[BottleneckClass, Signals | None]:
    """Without SM activity: utilisation and memory-copy utilisation, each replaced by the
    profiled ratio that measures it where the source has one (DRAM activity for memory,
    engine activity for busy-ness, tensor activity for compute): on a loaded T4 memory-copy
    utilisation reads 73 % while DRAM is 9 % active."""
    g = reading.gpm
    dram = None if g is None else g.dram_active
    if dram is not None:
        memory: float | None = dram
        memory_threshold = t.memory_dram_active
    else:
        memory, memory_threshold = reading.utilization_memory, t.basic_memory_utilization
    util = engine_activity(reading)
    tensor = None if g is None else g.tensor_active
    if memory is not None and memory >= memory_threshold:
        return BottleneckClass.MEMORY, Signals.BASIC
    if (
        pcie_bytes_per_second is not None
        and pcie_bytes_per_second >= t.io_bytes_per_second
        and (memory or 0.0) < t.basic_io_memory_utilization_max
    ):
        return BottleneckClass.IO, Signals.BASIC
    if (util is not None and util >= t.basic_compute_utilization) or (
        tensor is not None and tensor >= t.compute_tensor_active
    ):
        return BottleneckClass.COMPUTE, Signals.BASIC
    if util is None:
        return BottleneckClass.UNKNOWN, None
    if util >= t.busy_activity:
        return BottleneckClass.OVERHEAD, Signals.BASIC
    return BottleneckClass.IDLE, Signals.BASIC
