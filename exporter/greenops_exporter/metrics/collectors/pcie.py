"""The `pcie` collector: PCIe and NVLink byte counters."""

from __future__ import annotations

from greenops_exporter.backends.base import Capability
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    NVLINK_BYTES,
    PCIE_BYTES,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
    r = d.reading
    if r is None:  # counters keep their last value while a GPU is stale
        return
    if d.info.supports(Capability.PCIE_COUNTERS) or d.info.supports(Capability.GPM):
        out.add(PCIE_BYTES, d.waste.pcie_tx_bytes_total, d, "tx")
        out.add(PCIE_BYTES, d.waste.pcie_rx_bytes_total, d, "rx")
    out.add(NVLINK_BYTES, r.nvlink_tx_bytes, d, "tx")
    out.add(NVLINK_BYTES, r.nvlink_rx_bytes, d, "rx")
