"""Facts about GPU models that the simulator (and later the right-sizing and carbon
analysis) need: power envelope, memory, clocks, which counters exist, MIG profiles.

Sources: NVIDIA data sheets for power limits, memory and clocks; idle power for the H100 is
the recorded `idle_no_context` phase (tests/fixtures/h100), the others are typical
`nvidia-smi` readings of idle, persistence-mode boards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GIB = 1024**3
# whole-GPU compute slices of the models whose MIG profiles do not count sevenths
_TOTAL_SLICES = {"A30": 4}


def compute_slices(profile: str) -> int:
    """'3g.40gb' -> 3, '7g.79gb' -> 7 (the name, not a table: DCGM also writes odd sizes)."""
    found = re.search(r"(\d+)g\.", profile)
    return int(found.group(1)) if found else 1


def total_slices(name: str) -> int:
    """Compute slices of the whole GPU named `name` (sevenths, but quarters on an A30)."""
    return next((n for key, n in _TOTAL_SLICES.items() if key in name), 7)


@dataclass(frozen=True, slots=True)
class MigProfile:
    name: str
    memory_bytes: int
    compute_slices: int  # sevenths of the GPU's SMs


@dataclass(frozen=True, slots=True)
class GpuModel:
    key: str
    name: str
    architecture: str
    memory_bytes: int
    idle_watts: float
    max_watts: float
    max_sm_clock_mhz: float
    memory_clock_mhz: float
    idle_sm_clock_mhz: float
    has_gpm: bool
    has_energy_counter: bool
    has_power_instant: bool
    mig_profiles: tuple[MigProfile, ...] = ()

    def mig_profile(self, name: str) -> MigProfile:
        for profile in self.mig_profiles:
            if profile.name == name:
                return profile
        known = ", ".join(p.name for p in self.mig_profiles) or "none"
        raise KeyError(f"{self.key} has no MIG profile {name!r} (known: {known})")


_A100_H100_80GB_MIG = (
    MigProfile("1g.10gb", 10 * GIB, 1),
    MigProfile("1g.20gb", 20 * GIB, 1),
    MigProfile("2g.20gb", 20 * GIB, 2),
    MigProfile("3g.40gb", 40 * GIB, 3),
    MigProfile("4g.40gb", 40 * GIB, 4),
    MigProfile("7g.80gb", 80 * GIB, 7),
)

MODELS: dict[str, GpuModel] = {
    m.key: m
    for m in (
        GpuModel(
            key="h100-sxm",
            name="NVIDIA H100 80GB HBM3",
            architecture="hopper",
            memory_bytes=85520809984,  # as NVML reports it on the recorded board
            idle_watts=74.0,
            max_watts=700.0,
            max_sm_clock_mhz=1980,
            memory_clock_mhz=2619,
            idle_sm_clock_mhz=345,
            has_gpm=True,
            has_energy_counter=True,
            has_power_instant=True,
            mig_profiles=_A100_H100_80GB_MIG,
        ),
        GpuModel(
            key="a100-80gb",
            name="NVIDIA A100-SXM4-80GB",
            architecture="ampere",
            memory_bytes=85899345920,
            idle_watts=55.0,
            max_watts=400.0,
            max_sm_clock_mhz=1410,
            memory_clock_mhz=1593,
            idle_sm_clock_mhz=210,
            has_gpm=False,
            has_energy_counter=True,
            has_power_instant=True,
            mig_profiles=_A100_H100_80GB_MIG,
        ),
        GpuModel(
            key="a100-40gb",
            name="NVIDIA A100-SXM4-40GB",
            architecture="ampere",
            memory_bytes=42949672960,
            idle_watts=50.0,
            max_watts=400.0,
            max_sm_clock_mhz=1410,
            memory_clock_mhz=1215,
            idle_sm_clock_mhz=210,
            has_gpm=False,
            has_energy_counter=True,
            has_power_instant=True,
            mig_profiles=(
                MigProfile("1g.5gb", 5 * GIB, 1),
                MigProfile("1g.10gb", 10 * GIB, 1),
                MigProfile("2g.10gb", 10 * GIB, 2),
                MigProfile("3g.20gb", 20 * GIB, 3),
                MigProfile("4g.20gb", 20 * GIB, 4),
                MigProfile("7g.40gb", 40 * GIB, 7),
            ),
        ),
        GpuModel(
            key="l4",
            name="NVIDIA L4",
            architecture="ada",
            memory_bytes=24152899584,
            idle_watts=16.0,
            max_watts=72.0,
            max_sm_clock_mhz=2040,
            memory_clock_mhz=6251,
            idle_sm_clock_mhz=210,
            has_gpm=False,
            has_energy_counter=True,
            has_power_instant=False,
        ),
    )
}


def model_by_name(name: str) -> GpuModel | None:
    """The table's model whose NVML name this is, if any."""
    for model in MODELS.values():
        if model.name == name:
            return model
    return None


def idle_watts_estimate(name: str, power_limit_watts: float | None) -> float | None:
    """Idle board power: the table's when the model is known, else a quarter of the power
    limit (idle is 11 % of the limit on an H100, 14 % on an A100, 22 % on an L4)."""
    model = model_by_name(name)
    if model is not None:
        return model.idle_watts
    return None if power_limit_watts is None else 0.25 * power_limit_watts
