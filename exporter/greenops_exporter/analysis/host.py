"""Host energy, pure: RAPL counter increases, opt-in CPU and DRAM estimates, the CPU split.

Counter increases survive wrap-around; each interval's energy is split among processes by
their CPU time in it.

The model, and its limits (also in the README):
- A zone's energy over an interval is its `energy_uj` increase; the counter wraps at
  `max_energy_range_uj` (about 262 kJ on many Xeons: 20 minutes at 200 W), so a smaller
  value is a wrap, never a negative increase. A zone that failed a read counts on from its
  next good read; the gap is not guessed.
- package and dram are split; core and uncore lie inside package and psys covers the whole
  platform, so they are exported but never added to the others.
- Each interval's package (and dram) energy is split among the watched processes by their
  CPU seconds in the interval over the machine's busy CPU seconds; the rest, idle power
  included in proportion, is `other`. The shares and `other` add up to the zone's energy.
  A process's own CPU time counts (all its threads); live child processes it spawned are
  not its (they are `other` until they are watched themselves).
- The estimates (off unless switched on) are CodeCarbon 3.3.2's models in its default
  `machine` mode: CPU power = TDP x (0.1 + 0.9 x load^3), load the machine's CPU busy share
  over the interval (external/hardware.py, `CPU._get_power_from_cpu_load`), used only where
  no package counter can be read; DRAM power a constant from the machine's memory size, 5 W
  a DIMM of a DIMM count guessed from it (1.5 W on ARM), less for each DIMM past 4, 8 and
  16 (external/ram.py, `RAM._calculate_ram_power`), used only where no dram counter can be.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from greenops_exporter.sources.readings import CpuSample, ProcessCpu, Zone, ZoneSample

SPLIT_ZONES = ("package", "dram")
ESTIMATE_ID = "estimate"  # the zone id of the package estimate
ESTIMATE_DRAM_ID = "estimate-dram"  # the zone id of the DRAM estimate
ESTIMATE_KINDS = {ESTIMATE_ID: "package", ESTIMATE_DRAM_ID: "dram"}

K = TypeVar("K", bound=Hashable)


def counter_increase_joules(previous_uj: int, current_uj: int, max_range_uj: int) -> float:
    """Joules between two reads of a counter that wraps to 0 after `max_range_uj`."""
    if current_uj >= previous_uj:
        return (current_uj - previous_uj) / 1e6
    return (max_range_uj - previous_uj + current_uj) / 1e6


def cpu_increase(
    before: Mapping[int, ProcessCpu], after: Mapping[int, ProcessCpu]
) -> dict[int, float]:
    """CPU seconds of each process seen in both samples (a pid whose start time changed is a
    new process and gets nothing yet)."""
    out: dict[int, float] = {}
    for pid, now in after.items():
        then = before.get(pid)
        if then is not None and then.create_time == now.create_time:
            out[pid] = max(now.seconds - then.seconds, 0.0)
    return out


def split_by_cpu_time(
    joules: float, cpu_seconds: Mapping[K, float], busy_seconds: float
) -> tuple[dict[K, float], float]:
    """(each holder's joules, the rest): shares follow CPU seconds over the machine's busy
    seconds. When the watched processes' time exceeds the busy time read a moment apart,
    they share all of it and the rest is 0."""
    explained = sum(max(s, 0.0) for s in cpu_seconds.values())
    whole = max(busy_seconds, explained)
    if joules <= 0 or whole <= 0:
        return dict.fromkeys(cpu_seconds, 0.0), max(joules, 0.0)
    shares = {k: joules * max(s, 0.0) / whole for k, s in cpu_seconds.items()}
    return shares, max(joules - sum(shares.values()), 0.0)


def estimate_joules(
    tdp_watts: float, busy_seconds: float, total_seconds: float, seconds: float
) -> float:
    """CodeCarbon 3.3.2's CPU model (machine mode): the power is not linear in the load, a
    tenth of the TDP when idle and the rest growing with the load's cube."""
    if total_seconds <= 0 or seconds <= 0:
        return 0.0
    load = min(max(busy_seconds / total_seconds, 0.0), 1.0)
    return tdp_watts * (0.1 + 0.9 * load**3) * seconds


def dimm_count(total_gb: float) -> int:
    """CodeCarbon 3.3.2's guess of how many DIMMs hold this much memory (GiB)."""
    if total_gb <= 2:
        return 1
    if total_gb <= 16:
        return 2
    if total_gb <= 64:
        return 4
    if total_gb <= 128:
        return 8
    for size in (128, 64, 32, 16, 8, 4):
        if size <= total_gb / 8:
            return min(math.ceil(total_gb / size), 32)
    return 8


def ram_watts(total_gb: float, arm: bool = False) -> float:
    """CodeCarbon 3.3.2's RAM power: per DIMM, with less for each DIMM past 4, 8 and 16."""
    per_dimm, floor = (1.5, 3.0) if arm else (5.0, 10.0)
    n = dimm_count(total_gb)
    weights = [1.0] * min(n, 4) + [0.9] * min(max(n - 4, 0), 4)
    weights += [0.8] * min(max(n - 8, 0), 8) + [0.7] * max(n - 16, 0)
    return max(floor, per_dimm * sum(weights))


@dataclass(frozen=True, slots=True)
class HostSample:
    """One cycle's reads: the zones' counters and the CPU times, at `timestamp` (seconds on
    the collection's monotonic clock)."""

    timestamp: float
    zones: tuple[ZoneSample, ...]
    cpu: CpuSample | None = None


@dataclass(frozen=True, slots=True)
class HostCycle:
    """What one interval added: joules and mean watts per zone id (the estimate under
    ESTIMATE_ID), and per split zone the processes' shares (by pid) and the rest."""

    seconds: float = 0.0
    joules: Mapping[str, float] = field(default_factory=dict)
    watts: Mapping[str, float] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)  # zone id -> error this cycle
    shares: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    other: Mapping[str, float] = field(default_factory=dict)

    def process_joules(self, pid: int) -> float:
        return sum(by_pid.get(pid, 0.0) for by_pid in self.shares.values())

    def shares_total(self, zone: str) -> float:
        return sum(self.shares.get(zone, {}).values())


class HostMeter:
    """Per-zone energy totals from successive samples, and each interval's split."""

    def __init__(
        self,
        zones: Sequence[Zone],
        estimate_tdp_watts: float | None = None,
        estimate_ram_watts: float | None = None,
    ) -> None:
        self.zones = {z.id: z for z in zones}
        self.estimate_tdp_watts = estimate_tdp_watts
        self.estimate_ram_watts = estimate_ram_watts
        self.totals: dict[str, float] = dict.fromkeys(self.zones, 0.0)
        if estimate_tdp_watts is not None:
            self.totals[ESTIMATE_ID] = 0.0
        if estimate_ram_watts is not None:
            self.totals[ESTIMATE_DRAM_ID] = 0.0
        self._last_uj: dict[str, int] = {}
        self._last: HostSample | None = None

    def kind(self, zone_id: str) -> str:
        return ESTIMATE_KINDS.get(zone_id) or self.zones[zone_id].zone

    @property
    def estimated(self) -> set[str]:
        """The kinds (package, dram) that an estimate stands in for."""
        return {kind for zone_id, kind in ESTIMATE_KINDS.items() if zone_id in self.totals}

    def update(self, sample: HostSample, watched: Collection[int] = ()) -> HostCycle:
        previous, self._last = self._last, sample
        seconds = 0.0 if previous is None else sample.timestamp - previous.timestamp
        joules: dict[str, float] = {}
        failed: dict[str, str] = {}
        for s in sample.zones:
            if s.energy_uj is None:
                failed[s.id] = s.error
                self._last_uj.pop(s.id, None)  # count on from the next good read
                continue
            before = self._last_uj.get(s.id)
            self._last_uj[s.id] = s.energy_uj
            if before is not None and s.id in self.zones:
                zone = self.zones[s.id]
                joules[s.id] = counter_increase_joules(
                    before, s.energy_uj, zone.max_energy_range_uj
                )
        cpu_then = previous.cpu if previous is not None else None
        cpu_now = sample.cpu
        busy = 0.0
        per_pid: dict[int, float] = {}
        if cpu_then is not None and cpu_now is not None:
            busy = max(cpu_now.busy_seconds - cpu_then.busy_seconds, 0.0)
            per_pid = cpu_increase(cpu_then.processes, cpu_now.processes)
            if self.estimate_tdp_watts is not None:
                total = max(cpu_now.total_seconds - cpu_then.total_seconds, 0.0)
                joules[ESTIMATE_ID] = estimate_joules(self.estimate_tdp_watts, busy, total, seconds)
        if self.estimate_ram_watts is not None and previous is not None:
            joules[ESTIMATE_DRAM_ID] = self.estimate_ram_watts * max(seconds, 0.0)
        for zone_id, j in joules.items():
            self.totals[zone_id] = self.totals.get(zone_id, 0.0) + j
        watts = {z: j / seconds for z, j in joules.items()} if seconds > 0 else {}
        watched_cpu = {pid: per_pid[pid] for pid in watched if pid in per_pid}
        shares: dict[str, Mapping[int, float]] = {}
        other: dict[str, float] = {}
        for kind in SPLIT_ZONES:
            kind_joules = sum(j for z, j in joules.items() if self.kind(z) == kind)
            if not any(self.kind(z) == kind for z in joules):
                continue
            shares[kind], other[kind] = split_by_cpu_time(kind_joules, watched_cpu, busy)
        return HostCycle(seconds, joules, watts, failed, shares, other)
