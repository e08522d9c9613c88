"""PCIe byte counters that tell the truth.

NVML's PCIe byte-count fields are 32-bit: on the recorded H100 they wrap every 4 GiB, which
a host-to-device copy at 55 GiB/s does more than ten times a second. Exported raw they would
look like counter resets. So bytes come from GPM's PCIe rates (MiB/s over exactly the
interval since the previous read) where the GPU has GPM, and from wrap-corrected counter
deltas otherwise (exact only below 4 GiB per collection interval: documented).
"""

from __future__ import annotations

from greenops_exporter.backends.base import Reading

WRAP_32 = 2**32


def counter_delta(previous: int | None, current: int | None) -> float | None:
    """Increase of a cumulative counter that may wrap at 32 bits; None when unknowable."""
    if previous is None or current is None:
        return None
    delta = current - previous
    if delta < 0 and previous < WRAP_32 and current < WRAP_32:
        delta += WRAP_32
    return float(delta) if delta >= 0 else None


class TrafficMeter:
    """Monotonic PCIe byte totals (tx, rx) and the rate over the last interval."""

    def __init__(self) -> None:
        self.tx_bytes = 0.0
        self.rx_bytes = 0.0
        self.bytes_per_second: float | None = None
        self._previous: Reading | None = None

    def update(self, reading: Reading) -> None:
        previous, self._previous = self._previous, reading
        if previous is None:
            return
        dt = reading.timestamp - previous.timestamp
        if dt <= 0:
            return
        g = reading.gpm
        if (
            g is not None
            and g.pcie_tx_bytes_per_second is not None
            and g.pcie_rx_bytes_per_second is not None
        ):
            tx: float | None = g.pcie_tx_bytes_per_second * dt
            rx: float | None = g.pcie_rx_bytes_per_second * dt
        else:
            tx = counter_delta(previous.pcie_tx_bytes, reading.pcie_tx_bytes)
            rx = counter_delta(previous.pcie_rx_bytes, reading.pcie_rx_bytes)
        if tx is None or rx is None:
            self.bytes_per_second = None
            return
        self.tx_bytes += tx
        self.rx_bytes += rx
        self.bytes_per_second = (tx + rx) / dt
