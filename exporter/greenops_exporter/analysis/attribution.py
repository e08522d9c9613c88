"""Who used the energy: split each GPU's energy per cycle among its processes (and MIG
instances), and keep per-process and per-pod totals with bounded cardinality.

The model, and its limits (also in the README):
- The GPU's power has an idle part (what it draws doing nothing: the lowest power seen
  since start, capped by the model's idle power, or a quarter of its power limit for a
  model we do not know) and an active part (the rest).
- One process takes all of it. Several share the active part by their per-process SM
  utilisation (NVML samples it about every 200 ms; read only while a GPU is shared) and the
  idle part evenly. Without SM shares the active part is split by memory held, else evenly.
- On MIG, energy is split among GPU instances first (by their SM activity where known,
  else by memory used), then among the processes of each instance by the same rules.
- Energy of a GPU with no process belongs to nobody: it shows as idle waste, not here.
NVML's per-process utilisation is a sampled share of time, not of joules: a process that
keeps all SMs busy with tensor work and one that runs a light kernel for as long get equal
shares. It is the best per-process signal NVML offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from greenops_exporter.backends.base import MigReading, ProcessReading, Reading


@dataclass(frozen=True, slots=True)
class ProcessKey:
    gpu_uuid: str  # kept so that a process on two GPUs is two identities
    pid: int
    command: str
    namespace: str = ""
    pod: str = ""
    container: str = ""
    container_id: str = ""


@dataclass(frozen=True, slots=True)
class PodKey:
    namespace: str
    pod: str
    container: str


def _weights(values: Sequence[float | None], fallback: Sequence[float]) -> list[float]:
    if any(v for v in values):
        return [max(v or 0.0, 0.0) for v in values]
    if any(fallback):
        return list(fallback)
    return [1.0] * len(values)


def _share(total: float, weights: Sequence[float]) -> list[float]:
    whole = sum(weights)
    if whole <= 0:
        return [total / len(weights)] * len(weights) if weights else []
    return [total * w / whole for w in weights]


def split_among_processes(
    joules: float, idle_joules: float, processes: Sequence[ProcessReading]
) -> list[float]:
    """Joules for each process; they add up to `joules` (nothing when there is no process)."""
    if not processes:
        return []
    if len(processes) == 1:
        return [joules]
    idle = min(max(idle_joules, 0.0), joules)
    active = joules - idle
    weights = _weights(
        [p.sm_utilization for p in processes],
        [float(p.used_memory_bytes or 0) for p in processes],
    )
    active_parts = _share(active, weights)
    idle_part = idle / len(processes)
    return [a + idle_part for a in active_parts]


def split_among_instances(joules: float, instances: Sequence[MigReading]) -> list[float]:
    weights = _weights(
        [m.sm_active for m in instances], [float(m.memory_used_bytes or 0) for m in instances]
    )
    return _share(joules, weights)


def split(
    reading: Reading, joules: float, idle_joules: float
) -> list[tuple[ProcessReading, float]]:
    """Every process of the reading with its joules for this interval."""
    processes = reading.processes
    if not processes or joules <= 0:
        return [(p, 0.0) for p in processes]
    if not reading.mig_devices:
        return list(
            zip(processes, split_among_processes(joules, idle_joules, processes), strict=True)
        )
    out: list[tuple[ProcessReading, float]] = []
    instances = reading.mig_devices
    parts = split_among_instances(joules, instances)
    share_of_idle = idle_joules / len(instances)
    for instance, part in zip(instances, parts, strict=True):
        members = [p for p in processes if p.gpu_instance_id == instance.gpu_instance_id]
        out += zip(members, split_among_processes(part, share_of_idle, members), strict=True)
    placed = {id(p) for p, _ in out}
    out += [(p, 0.0) for p in processes if id(p) not in placed]  # no instance known
    return out


class IdleBaseline:
    """The GPU's idle power: the lowest power seen since start, capped by an estimate of the
    model's idle power (a GPU that never idles would otherwise call all its power idle)."""

    def __init__(self, cap_watts: float | None = None) -> None:
        self.cap_watts = cap_watts
        self.watts: float | None = None

    def idle_joules(self, reading: Reading, seconds: float) -> float:
        power = reading.best_power_watts()
        if power is None or seconds <= 0:
            return 0.0
        self.watts = power if self.watts is None else min(self.watts, power)
        if self.cap_watts is not None:
            self.watts = min(self.watts, self.cap_watts)
        return self.watts * seconds


K = TypeVar("K")


class ExpiringTotals(Generic[K]):
    """Counters by identity that forget identities unseen for `expire_seconds`, so that
    churning processes and pods cannot grow the series count without bound."""

    def __init__(self, expire_seconds: float) -> None:
        self.expire_seconds = expire_seconds
        self._totals: dict[K, float] = {}
        self._seen: dict[K, float] = {}

    def add(self, key: K, joules: float, now: float) -> None:
        self._totals[key] = self._totals.get(key, 0.0) + joules
        self._seen[key] = now

    def expire(self, now: float) -> None:
        for key in [k for k, seen in self._seen.items() if now - seen > self.expire_seconds]:
            del self._totals[key]
            del self._seen[key]

    def items(self) -> Iterable[tuple[K, float]]:
        return self._totals.items()

    def snapshot(self) -> Mapping[K, float]:
        return dict(self._totals)

    def __len__(self) -> int:
        return len(self._totals)
