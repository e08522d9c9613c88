"""The `gpu` collector: identity, up, power, energy, utilisation, memory, clocks, events."""

from __future__ import annotations

from greenops_exporter.backends.base import Capability
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.names import (
    CLOCK,
    CLOCK_EVENT,
    CLOCK_EVENT_REASONS,
    ENERGY,
    ENERGY_RESETS,
    ENERGY_SOURCE,
    GPU_INFO,
    GPU_UNSUPPORTED,
    GPU_UP,
    MEMORY_TOTAL,
    MEMORY_USED,
    MEMORY_UTILIZATION,
    POWER,
    POWER_INSTANT,
    POWER_LIMIT,
    PSTATE,
    TEMPERATURE,
    UTILIZATION,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, d: DeviceSnapshot) -> None:
    info = d.info
    out.add(
        GPU_INFO,
        1,
        d,
        info.name,
        info.pci_bus_id,
        info.driver_version,
        info.architecture,
        "enabled" if info.mig_enabled else "disabled",
    )
    out.add(GPU_UP, 1 if d.up else 0, d)
    for capability in Capability:
        if not info.supports(capability):
            out.add(GPU_UNSUPPORTED, 1, d, capability.value)
    out.add(POWER_LIMIT, info.power_limit_watts, d)
    if d.energy_source.value != "none":
        out.add(ENERGY, d.energy_joules_total, d)
        out.add(ENERGY_SOURCE, 1, d, d.energy_source.value)
    out.add(ENERGY_RESETS, d.energy_counter_resets, d)
    r = d.reading
    if r is None or not d.up:
        return  # no stale values presented as current
    out.add(POWER, r.power_watts, d)
    out.add(POWER_INSTANT, r.power_instant_watts, d)
    out.add(UTILIZATION, r.utilization_gpu, d)
    out.add(MEMORY_UTILIZATION, r.utilization_memory, d)
    out.add(MEMORY_USED, r.memory_used_bytes, d)
    out.add(MEMORY_TOTAL, r.memory_total_bytes, d)
    out.add(TEMPERATURE, r.temperature_celsius, d)
    out.add(CLOCK, r.sm_clock_hertz, d, "sm")
    out.add(CLOCK, r.memory_clock_hertz, d, "memory")
    out.add(PSTATE, r.pstate, d)
    if r.clock_event_reasons is not None:
        for bit, reason in CLOCK_EVENT_REASONS:
            out.add(CLOCK_EVENT, 1 if r.clock_event_reasons & bit else 0, d, reason)
