"""The `carbon` collector: the grid's intensity and forecast, each GPU's and pod's carbon and
cost, and who held the GPU for how long."""

from __future__ import annotations

from greenops_exporter.collect.snapshot import Snapshot
from greenops_exporter.metrics.names_accounts import (
    FORECAST_MIN,
    GPU_CARBON,
    GPU_COST,
    GPU_WASTE_COST,
    GREENEST_MEAN,
    GREENEST_SAVING,
    GREENEST_START,
    GRID_INTENSITY,
    HOLDER_COST,
    HOLDER_SECONDS,
    POD_CARBON,
    POD_COST,
    POD_GPU_IDLE_SECONDS,
    POD_GPU_SECONDS,
    POD_WASTE_COST,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, snap: Snapshot) -> None:
    if snap.intensity is not None:
        zone = snap.intensity.zone
        out.add(GRID_INTENSITY, snap.intensity.grams_per_kwh, None, snap.intensity.source, zone)
        out.add(FORECAST_MIN, snap.forecast_min_grams_per_kwh, None, zone)
        if snap.greenest is not None:
            out.add(GREENEST_START, snap.greenest.start.timestamp(), None, zone)
            out.add(GREENEST_MEAN, snap.greenest.mean_grams_per_kwh, None, zone)
            out.add(GREENEST_SAVING, snap.greenest.saving_ratio, None, zone)
    for d in snap.devices:
        c = d.costs
        out.add(GPU_CARBON, c.operational_grams, d, "operational")
        out.add(GPU_CARBON, c.embodied_grams, d, "embodied")
        out.add(GPU_COST, c.energy_cost, d, "energy", c.currency)
        out.add(GPU_COST, c.rental_cost, d, "rental", c.currency)
        for cls, cost in c.waste_cost.items():
            out.add(GPU_WASTE_COST, cost, d, cls.value, c.currency)
        for holder, cost in d.holder_cost.items():
            out.add(HOLDER_COST, cost, d, holder, c.currency)
        for holder, seconds in d.holder_seconds.items():
            out.add(HOLDER_SECONDS, seconds, d, holder)
        for pod, seconds in d.pod_gpu_seconds.items():
            out.add(POD_GPU_SECONDS, seconds, d, pod.namespace, pod.pod, pod.container)
        for pod, seconds in d.pod_gpu_idle_seconds.items():
            out.add(POD_GPU_IDLE_SECONDS, seconds, d, pod.namespace, pod.pod, pod.container)
        for pod, pc in d.pod_costs.items():
            labels = (pod.namespace, pod.pod, pod.container)
            out.add(POD_CARBON, pc.operational_grams, d, *labels, "operational")
            out.add(POD_CARBON, pc.embodied_grams, d, *labels, "embodied")
            out.add(POD_COST, pc.cost, d, *labels, c.currency)
        for (pod, cls), cost in d.pod_waste_cost.items():
            out.add(
                POD_WASTE_COST,
                cost,
                d,
                pod.namespace,
                pod.pod,
                pod.container,
                cls.value,
                c.currency,
            )
