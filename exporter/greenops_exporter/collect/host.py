"""Host energy in the collection: RAPL zones and CPU times read each cycle, host accounts kept.

The zones are found once; each cycle they are read with the GPU processes' CPU time in a
worker thread, and the accounts a Snapshot shows are kept here.

What cannot be read is said once in the log, listed as unsupported and left out; a zone
whose read fails later is marked down, counted and logged on each change of state, and the
other zones carry on.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import psutil

from greenops_exporter.analysis.attribution import ExpiringTotals, PodKey
from greenops_exporter.analysis.carbon import energy_cost, operational_grams
from greenops_exporter.analysis.host import (
    ESTIMATE_KINDS,
    SPLIT_ZONES,
    HostCycle,
    HostMeter,
    HostSample,
    ram_watts,
)
from greenops_exporter.backends.base import ProcessReading
from greenops_exporter.collect.settings import HostSettings
from greenops_exporter.collect.snapshot import (
    HostProcessKey,
    HostSnapshot,
    HostUnsupported,
    HostZoneSnapshot,
)
from greenops_exporter.sources import rapl
from greenops_exporter.sources.cputime import sample_cpu

log = logging.getLogger(__name__)
K = TypeVar("K")


class HostCollection:
    """Owns the host's zones, their meter and the host accounts."""

    def __init__(
        self,
        settings: HostSettings,
        monotonic: Callable[[], float] = time.monotonic,
        attribute: bool = False,
    ) -> None:
        self.settings = settings
        # whether GPU processes' pids are this machine's (the backend says once it is open)
        self.attribute = attribute
        self._monotonic = monotonic
        self.discovery: rapl.Discovery | None = None
        self.meter: HostMeter | None = None
        self._up: dict[str, bool] = {}
        self._errors: dict[str, int] = {}
        self._watts: dict[str, float] = {}
        s = settings
        self._processes: ExpiringTotals[HostProcessKey] = ExpiringTotals(s.identity_expire_seconds)
        self._pods: ExpiringTotals[tuple[PodKey, str, str]] = ExpiringTotals(
            s.identity_expire_seconds
        )
        self._pod_grams: ExpiringTotals[tuple[PodKey, str]] = ExpiringTotals(
            s.identity_expire_seconds
        )
        self._pod_cost: ExpiringTotals[tuple[PodKey, str]] = ExpiringTotals(
            s.identity_expire_seconds
        )
        self._holders: dict[tuple[str, str, str], float] = {}
        self._grams: dict[tuple[str, str], float] = {}
        self._cost: dict[tuple[str, str], float] = {}
        self.cycle = HostCycle()
        self.cycle_grams_per_joule = 0.0

    # --- blocking: called from a worker thread ---------------------------------------------

    def open(self) -> None:
        """Discover the zones once; say once what cannot be read and why."""
        s = self.settings
        found = rapl.discover(s.powercap_root)
        self.discovery = found
        has_package = any(z.zone == "package" for z in found.zones)
        has_dram = any(z.zone == "dram" for z in found.zones)
        tdp = s.cpu_tdp_watts if s.estimate and not has_package else None
        dram = None
        if s.estimate and not has_dram:  # CodeCarbon's model of the machine's memory
            arm = any(a in platform.machine().lower() for a in ("arm", "aarch"))
            dram = ram_watts(psutil.virtual_memory().total / 2**30, arm)
        self.meter = HostMeter(found.zones, tdp, dram)
        self._up = {z.id: True for z in found.zones}
        notes = ["CPU energy is estimated from the configured TDP"] if tdp is not None else []
        if dram is not None:
            notes.append(f"DRAM energy is estimated at {dram:g} W (CodeCarbon's memory model)")
        then = "".join(f" {note}." for note in notes).rstrip(".")
        if found.problem:
            log.warning("host energy unavailable: %s.%s", found.problem, then)
        by_reason: dict[str, list[str]] = {}
        for z in found.unreadable:
            by_reason.setdefault(z.reason, []).append(f"{z.id} ({z.zone})")
        for reason, ids in by_reason.items():
            log.warning(
                "host energy: cannot read %d RAPL zone(s) under %s: %s; %s.%s",
                len(ids),
                s.powercap_root,
                ", ".join(ids),
                reason,
                then,
            )
        if found.zones:
            log.info(
                "host energy: %s",
                ", ".join(f"{z.id} {z.zone}{z.package and ' ' + z.package}" for z in found.zones),
            )

    @property
    def needed(self) -> bool:
        return self.meter is not None and (bool(self.meter.zones) or bool(self.meter.estimated))

    def sample(self, pids: Sequence[int]) -> HostSample:
        assert self.meter is not None
        zones = tuple(self.meter.zones.values())
        wants_cpu = self.attribute or self.meter.estimate_tdp_watts is not None
        cpu = sample_cpu(pids if self.attribute else ()) if wants_cpu else None
        return HostSample(self._monotonic(), rapl.read_zones(zones), cpu)

    # --- on the loop: pure bookkeeping -----------------------------------------------------

    def measured_joules(self, pids: set[int]) -> float:
        """This cycle's host joules of these processes from RAPL counters (not estimates)."""
        return sum(
            sum(by_pid.get(pid, 0.0) for pid in pids)
            for zone, by_pid in self.cycle.shares.items()
            if not (self.meter and zone in self.meter.estimated)
        )

    def missed(self, reason: str) -> None:
        """The whole read missed its deadline: every zone is down this cycle."""
        self.cycle = HostCycle()
        for zone_id in self._up:
            self._mark(zone_id, reason)

    def accept(
        self, sample: HostSample, processes: Sequence[ProcessReading], grams_per_kwh: float
    ) -> HostCycle:
        assert self.meter is not None
        s = self.settings
        by_pid = {p.pid: p for p in processes} if self.attribute else {}
        cycle = self.meter.update(sample, by_pid)
        self.cycle = cycle
        for zone_id in self._up:
            if zone_id in cycle.failed:
                self._mark(zone_id, cycle.failed[zone_id])
            elif not self._up[zone_id]:
                log.info("host energy: zone %s is readable again", zone_id)
                self._up[zone_id] = True
        self._watts = dict(cycle.watts)
        now = self._monotonic()
        estimated = self.meter.estimated
        per_joule = operational_grams(1.0, s.pue, grams_per_kwh)
        price = energy_cost(1.0, s.pue, s.energy_price_per_kwh)
        self.cycle_grams_per_joule = per_joule
        for kind in SPLIT_ZONES:
            if kind not in cycle.shares:
                continue
            source = "estimate" if kind in estimated else "counter"
            total = cycle.shares_total(kind) + cycle.other[kind]
            self._add(self._grams, (kind, source), total * per_joule)
            self._add(self._cost, (kind, source), total * price)
            self._add(self._holders, ("other", kind, source), cycle.other[kind])
            self._add(self._holders, ("process", kind, source), cycle.shares_total(kind))
            for pid, joules in cycle.shares[kind].items():
                p = by_pid[pid]
                key = HostProcessKey(
                    pid, p.command, p.namespace, p.pod, p.container, p.container_id, kind, source
                )
                self._processes.add(key, joules, now)
                if p.pod:
                    pod = PodKey(p.namespace, p.pod, p.container)
                    self._pods.add((pod, kind, source), joules, now)
                    self._pod_grams.add((pod, source), joules * per_joule, now)
                    self._pod_cost.add((pod, source), joules * price, now)
        for totals in (self._processes, self._pods, self._pod_grams, self._pod_cost):
            totals.expire(now)
        return cycle

    @staticmethod
    def _add(totals: dict[K, float], key: K, value: float) -> None:
        totals[key] = totals.get(key, 0.0) + value

    def _mark(self, zone_id: str, reason: str) -> None:
        self._errors[zone_id] = self._errors.get(zone_id, 0) + 1
        if self._up.get(zone_id, False):
            log.warning("host energy: zone %s is stale: %s", zone_id, reason)
        self._up[zone_id] = False
        self._watts.pop(zone_id, None)

    def snapshot(self) -> HostSnapshot:
        found, meter = self.discovery, self.meter
        if found is None or meter is None:
            return HostSnapshot()
        unsupported = [
            HostUnsupported("rapl_energy", z.zone, z.package, z.reason) for z in found.unreadable
        ]
        if found.problem:
            unsupported.append(HostUnsupported("rapl", "", "", found.problem))
        zones = [
            HostZoneSnapshot(
                z.zone,
                z.package,
                "counter",
                meter.totals.get(z.id, 0.0),
                self._watts.get(z.id) if self._up.get(z.id) else None,
                self._up.get(z.id, False),
                self._errors.get(z.id, 0),
            )
            for z in meter.zones.values()
        ]
        zones += [
            HostZoneSnapshot(
                kind, "", "estimate", meter.totals[zone_id], self._watts.get(zone_id), True, 0
            )
            for zone_id, kind in ESTIMATE_KINDS.items()
            if zone_id in meter.totals
        ]
        return HostSnapshot(
            zones=tuple(zones),
            unsupported=tuple(unsupported),
            process_energy=self._processes.snapshot(),
            pod_energy=self._pods.snapshot(),
            holder_energy=dict(self._holders),
            carbon_grams=dict(self._grams),
            cost=dict(self._cost),
            pod_carbon_grams=self._pod_grams.snapshot(),
            pod_cost=self._pod_cost.snapshot(),
            currency=self.settings.currency,
        )
