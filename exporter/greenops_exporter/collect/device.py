"""One GPU's running accounts (energy, efficiency, attribution, footprint), reading by reading."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from greenops_exporter.analysis.attribution import (
    ExpiringTotals,
    IdleBaseline,
    PodKey,
    ProcessKey,
    split,
)
from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.efficiency import Efficiency
from greenops_exporter.analysis.energy import EnergyMeter
from greenops_exporter.analysis.footprint import WASTE_CLASSES, CycleFootprint, Footprint
from greenops_exporter.backends.base import DeviceInfo, ProcessReading, Reading
from greenops_exporter.collect.settings import CollectSettings
from greenops_exporter.collect.snapshot import Costs, DeviceSnapshot, PodCosts, Waste
from greenops_exporter.facts.gpu_models import idle_watts_estimate, model_by_name

log = logging.getLogger(__name__)

# Who held a GPU in a cycle: a pod, a process outside any pod, or nobody.
HOLDERS = ("pod", "process", "none")

# Fills in pod, namespace and container of a process (kubelet pod-resources, cgroups).
ProcessIdentifier = Callable[[DeviceInfo, Reading, ProcessReading], ProcessReading]


# where a GPU reports no activity, what would make it report some, by backend
NO_ACTIVITY_ADVICE = {
    "dcgm": "no activity data on this page: add DCGM_FI_DEV_GPU_UTIL or "
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE to dcgm-exporter's field list",
    "nvml": "no activity data: NVML reports no utilisation for this GPU (a vGPU, or the "
    "call fails), so no class, idle waste or right-sizing",
}


@dataclass
class DeviceState:
    info: DeviceInfo
    efficiency: Efficiency
    processes: ExpiringTotals[ProcessKey]
    pods: ExpiringTotals[PodKey]
    baseline: IdleBaseline
    footprint: Footprint
    pod_operational: ExpiringTotals[PodKey]
    pod_embodied: ExpiringTotals[PodKey]
    pod_cost: ExpiringTotals[PodKey]
    pod_waste_cost: ExpiringTotals[tuple[PodKey, BottleneckClass]]
    pod_seconds: ExpiringTotals[PodKey]
    pod_idle_seconds: ExpiringTotals[PodKey]
    holder_cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOLDERS, 0.0))
    holder_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOLDERS, 0.0))
    cycle_footprint: CycleFootprint | None = None
    meter: EnergyMeter = field(default_factory=EnergyMeter)
    reading: Reading | None = None
    up: bool = True
    stale_reason: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    last_success_unix: float | None = None
    last_anchor: float | None = None
    read_seconds: float | None = None
    cycle_joules: float = 0.0  # this cycle's energy and its split, for inference sources
    cycle_split: list[tuple[ProcessReading, float]] = field(default_factory=list)
    in_flight: concurrent.futures.Future[tuple[Reading, float]] | None = None

    @classmethod
    def new(cls, info: DeviceInfo, s: CollectSettings, backend: str = "nvml") -> DeviceState:
        def totals() -> ExpiringTotals[Any]:
            return ExpiringTotals(s.identity_expire_seconds)

        return cls(
            info,
            Efficiency(
                thresholds=s.thresholds,
                waste=s.waste,
                model=model_by_name(info.name),
                advice_window_seconds=s.advice_window_seconds,
                no_activity_advice=NO_ACTIVITY_ADVICE.get(backend, NO_ACTIVITY_ADVICE["nvml"]),
                device_name=info.name,
            ),
            totals(),
            totals(),
            IdleBaseline(idle_watts_estimate(info.name, info.power_limit_watts)),
            Footprint(s.footprint_for(info)),
            totals(),
            totals(),
            totals(),
            totals(),
            totals(),
            totals(),
            meter=EnergyMeter(),
        )

    def count(self, call: str) -> None:
        self.errors[call] = self.errors.get(call, 0) + 1

    def snapshot(self) -> DeviceSnapshot:
        return DeviceSnapshot(
            info=self.info,
            up=self.up,
            reading=self.reading,
            energy_joules_total=self.meter.total_joules,
            energy_source=self.meter.source,
            energy_counter_resets=self.meter.resets,
            errors=MappingProxyType(dict(self.errors)),
            last_success_unix=self.last_success_unix,
            read_seconds=self.read_seconds,
            stale_reason=self.stale_reason,
            waste=self._waste(),
            process_energy=self.processes.snapshot(),
            pod_energy=self.pods.snapshot(),
            costs=Costs(
                self.footprint.operational_grams,
                self.footprint.embodied_grams,
                self.footprint.energy_cost,
                self.footprint.rental_cost,
                dict(self.footprint.waste_cost),
                self.footprint.settings.currency,
            ),
            pod_costs=self._pod_costs(),
            pod_waste_cost=self.pod_waste_cost.snapshot(),
            holder_cost=dict(self.holder_cost),
            holder_seconds=dict(self.holder_seconds),
            pod_gpu_seconds=self.pod_seconds.snapshot(),
            pod_gpu_idle_seconds=self.pod_idle_seconds.snapshot(),
        )

    def _pod_costs(self) -> dict[PodKey, PodCosts]:
        embodied, cost = self.pod_embodied.snapshot(), self.pod_cost.snapshot()
        return {
            pod: PodCosts(grams, embodied.get(pod, 0.0), cost.get(pod, 0.0))
            for pod, grams in self.pod_operational.items()
        }

    def _waste(self) -> Waste:
        e = self.efficiency
        return Waste(
            bottleneck=e.current,
            signals=e.signals,
            class_seconds=dict(e.class_seconds),
            class_joules=dict(e.class_joules),
            idle_joules_no_holder=e.idle_joules_no_holder,
            idle_joules_with_holder=e.idle_joules_with_holder,
            stranded=e.stranded,
            underutilization_ratio=e.underutilization_ratio,
            pcie_tx_bytes_total=e.traffic.tx_bytes,
            pcie_rx_bytes_total=e.traffic.rx_bytes,
            right_size=e.right_size,
            advice=e.advice,
            instances=e.instances,
            instance_seconds=dict(e.instance_seconds),
            mig_unallocated_ratio=e.mig_unallocated_ratio,
        )

    def accept(
        self, reading: Reading, seconds: float, now: float, wall: float, intensity: float
    ) -> None:
        """Fold one good reading into every account; `now` is the monotonic clock (expiry),
        `wall` the Unix time, `intensity` the grid's gCO2e/kWh in force this cycle."""
        for call in reading.failed_calls:
            self.count(call)
        previous = self.reading
        joules = self.meter.update(reading)
        self.efficiency.update(reading, joules)
        seconds_since = 0.0 if previous is None else reading.timestamp - previous.timestamp
        idle = self.baseline.idle_joules(reading, seconds_since)
        self.cycle_joules = joules
        self.cycle_split = split(reading, joules, idle)
        cycle = self.footprint.update(joules, seconds_since, intensity, self.efficiency.current)
        self.cycle_footprint = cycle
        if not self.cycle_split:
            self.holder_cost["none"] += cycle.cost
            self.holder_seconds["none"] += seconds_since
        for process, share in self.cycle_split:
            # a GPU with no energy this cycle still costs rental: split evenly then
            ratio = share / joules if joules > 0 else 1.0 / len(self.cycle_split)
            holder = "pod" if process.pod else "process"
            self.holder_cost[holder] += cycle.share(ratio).cost
            self.holder_seconds[holder] += seconds_since / len(self.cycle_split)
            self.processes.add(
                ProcessKey(
                    self.info.uuid,
                    process.pid,
                    process.command,
                    process.namespace,
                    process.pod,
                    process.container,
                    process.container_id,
                ),
                share,
                now,
            )
            if process.pod:
                pod = PodKey(process.namespace, process.pod, process.container)
                self.pods.add(pod, share, now)
                part = cycle.share(ratio)
                self.pod_operational.add(pod, part.operational_grams, now)
                self.pod_embodied.add(pod, part.embodied_grams, now)
                self.pod_cost.add(pod, part.cost, now)
                held = seconds_since / len(self.cycle_split)
                self.pod_seconds.add(pod, held, now)
                is_idle = self.efficiency.current is BottleneckClass.IDLE
                self.pod_idle_seconds.add(pod, held if is_idle else 0.0, now)
                if self.efficiency.current in WASTE_CLASSES:
                    self.pod_waste_cost.add((pod, self.efficiency.current), part.cost, now)
        self.reading = reading
        self.read_seconds = seconds
        self.last_success_unix = wall
        if not self.up:
            log.info("GPU %d (%s) is back", self.info.index, self.info.uuid)
        self.up = True
        self.stale_reason = ""

    def mark_down(self, reason: str) -> None:
        if self.up:
            log.warning("GPU %d (%s) is stale: %s", self.info.index, self.info.uuid, reason)
        self.up = False
        self.stale_reason = reason
