"""The `gpm` collector: SM, tensor, DRAM and pipe activity, PCIe and NVLink rates (GPM)."""

from __future__ import annotations

from greenops_exporter.backends.base import Capability
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    DRAM_ACTIVE,
    GPM_NVLINK_RATE,
    GPM_PCIE_RATE,
    PIPE_ACTIVE,
    PIPES,
    SM_ACTIVE,
    SM_OCCUPANCY,
    TENSOR_ACTIVE,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
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
