"""The `processes` collector: each GPU process's and pod's energy, memory and SM share."""

from __future__ import annotations

from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    POD_ENERGY,
    PROCESS_ENERGY,
    PROCESS_MEMORY,
    PROCESS_SM,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
    for key, joules in d.process_energy.items():
        out.add(
            PROCESS_ENERGY,
            joules,
            d,
            str(key.pid),
            key.command,
            key.namespace,
            key.pod,
            key.container,
            key.container_id,
        )
    for pod, joules in d.pod_energy.items():
        out.add(POD_ENERGY, joules, d, pod.namespace, pod.pod, pod.container)
    if d.reading is None or not d.up:
        return
    for p in d.reading.processes:
        pid = str(p.pid)
        out.add(PROCESS_MEMORY, p.used_memory_bytes, d, pid, p.command)
        out.add(PROCESS_SM, p.sm_utilization, d, pid, p.command)
