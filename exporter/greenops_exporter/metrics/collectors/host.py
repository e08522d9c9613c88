"""The `host` collector: RAPL zones, their energy and its split to processes and pods (per
node)."""

from __future__ import annotations

from greenops_exporter.collect.snapshot import Snapshot
from greenops_exporter.metrics.names_host import (
    HOST_CARBON,
    HOST_COST,
    HOST_ENERGY,
    HOST_HOLDER_ENERGY,
    HOST_POD_CARBON,
    HOST_POD_COST,
    HOST_POD_ENERGY,
    HOST_POWER,
    HOST_PROCESS_ENERGY,
    HOST_READ_ERRORS,
    HOST_UNSUPPORTED,
    HOST_ZONE_UP,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, snap: Snapshot) -> None:
    h = snap.host
    if h is None:
        return
    for u in h.unsupported:
        out.add(HOST_UNSUPPORTED, 1, None, u.capability, u.zone, u.package)
    for z in h.zones:
        out.add(HOST_ENERGY, z.energy_joules_total, None, z.zone, z.package, z.source)
        out.add(HOST_POWER, z.power_watts, None, z.zone, z.package, z.source)  # None: stale
        if z.source == "counter":
            out.add(HOST_ZONE_UP, 1 if z.up else 0, None, z.zone, z.package)
            out.add(HOST_READ_ERRORS, z.errors, None, z.zone, z.package)
    for (holder, zone, source), joules in h.holder_energy.items():
        out.add(HOST_HOLDER_ENERGY, joules, None, holder, zone, source)
    for k, joules in h.process_energy.items():
        out.add(
            HOST_PROCESS_ENERGY,
            joules,
            None,
            str(k.pid),
            k.command,
            k.namespace,
            k.pod,
            k.container,
            k.container_id,
            k.zone,
            k.source,
        )
    for (pod, zone, source), joules in h.pod_energy.items():
        out.add(HOST_POD_ENERGY, joules, None, pod.namespace, pod.pod, pod.container, zone, source)
    for (zone, source), grams in h.carbon_grams.items():
        out.add(HOST_CARBON, grams, None, zone, source)
    for (zone, source), cost in h.cost.items():
        out.add(HOST_COST, cost, None, zone, source, h.currency)
    for (pod, source), grams in h.pod_carbon_grams.items():
        out.add(HOST_POD_CARBON, grams, None, pod.namespace, pod.pod, pod.container, source)
    for (pod, source), cost in h.pod_cost.items():
        labels = (pod.namespace, pod.pod, pod.container, source, h.currency)
        out.add(HOST_POD_COST, cost, None, *labels)
