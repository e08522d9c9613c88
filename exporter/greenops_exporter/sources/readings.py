"""What sources hand to the analysis: plain readings, no I/O.

The analysis layer imports these, never the sources themselves, so analysing a recording
or a test's numbers loads no HTTP client, psutil or sysfs code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Counts:
    requests: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class InferenceValue:
    counts: Mapping[str, Counts]
    fetched_at: float  # the source's monotonic clock
    reset: bool = False


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    create_time: float  # with the pid, tells a reused pid from the process seen before
    seconds: float  # user + system of all the process's threads


@dataclass(frozen=True, slots=True)
class CpuSample:
    busy_seconds: float  # summed over all CPUs since boot
    total_seconds: float
    processes: Mapping[int, ProcessCpu] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Zone:
    """One RAPL zone: `zone` is the kernel's name without its index (package, dram, core,
    uncore, psys); `package` is the socket it belongs to, "" for platform-wide psys."""

    id: str  # the directory name, intel-rapl:0:1: unique on a node
    path: Path
    zone: str
    package: str
    max_energy_range_uj: int


@dataclass(frozen=True, slots=True)
class ZoneSample:
    id: str
    energy_uj: int | None  # None when this cycle's read failed
    error: str = ""


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """A carbon-intensity forecast's value from `start` on (g CO2e per kWh)."""

    start: datetime
    grams_per_kwh: float
