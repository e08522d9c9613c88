"""The named collectors, one module each (node_exporter's pattern): each renders its series
from one immutable Snapshot, never from NVML, and can be switched off by name."""

from __future__ import annotations

from collections.abc import Callable

from greenops_exporter.collect.snapshot import DeviceSnapshot, Snapshot
from greenops_exporter.metrics.collectors import (
    carbon,
    efficiency,
    gpm,
    gpu,
    host,
    inference,
    mig,
    pcie,
    processes,
)
from greenops_exporter.metrics.output import Families

Renderer = Callable[[Families, Snapshot], None]


def _per_device(render: Callable[[Families, DeviceSnapshot], None]) -> Renderer:
    def render_all(out: Families, snap: Snapshot) -> None:
        for device in snap.devices:
            render(out, device)

    return render_all


RENDERERS: dict[str, Renderer] = {
    "gpu": _per_device(gpu.render),
    "efficiency": _per_device(efficiency.render),
    "gpm": _per_device(gpm.render),
    "pcie": _per_device(pcie.render),
    "processes": _per_device(processes.render),
    "mig": _per_device(mig.render),
    "inference": inference.render,
    "carbon": carbon.render,
    "host": host.render,
}
