"""The simulated fleet's scenario file: its schema, its loading, and the measured phases.

A phase's readings are the per-phase means measured on a real H100 (tests/fixtures/README.md),
kept here beside the schema that names them, so the device simulation in `sim.py` holds only
the arithmetic of time.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from greenops_exporter.config.validation import format_validation_error
from greenops_exporter.facts.gpu_models import MODELS

MIB = 1024 * 1024
CONTEXT_BYTES = 512 * MIB  # what a bare CUDA context holds on the recorded H100
DRIVER_RESERVED_BYTES = 503316480  # memory.used with no process, recorded H100
SW_POWER_CAP = 0x4
GPU_IDLE = 0x1

PhaseName = Literal[
    "idle",
    "idle_context",
    "compute",
    "memory",
    "overhead",
    "io",
    "inference",
    "bursty",
    "stranded_memory",
]


@dataclass(frozen=True, slots=True)
class PhaseProfile:
    """Mean readings of one kind of work, from the recorded H100 (percent and MiB/s)."""

    power_fraction: float  # of the span between the model's idle and maximum power
    util_gpu: float
    util_mem: float
    sm_active: float
    sm_occupancy: float
    tensor_active: float
    dram_active: float
    fp32_active: float
    integer_active: float
    pcie_tx_mib_s: float
    pcie_rx_mib_s: float
    holds_context: bool
    memory: Literal["none", "context", "full"]
    clock: Literal["idle", "max", "capped"]


def _fraction(watts: float) -> float:
    """Recorded H100 watts -> share of its 74..700 W span."""
    return (watts - 74.0) / (700.0 - 74.0)


# Per-phase means of trace_a after each phase settled (1.5 s), rounded.
PROFILES: dict[str, PhaseProfile] = {
    "idle": PhaseProfile(0.0, 0, 0, 0, 0, 0, 0, 0, 0, 3.2, 2.6, False, "none", "idle"),
    "idle_context": PhaseProfile(
        _fraction(120), 0, 0, 0, 0, 0, 0, 0, 0, 3.2, 2.6, True, "context", "max"
    ),
    "stranded_memory": PhaseProfile(
        _fraction(122), 0, 0, 0, 0, 0, 0, 0, 0, 3.2, 2.6, True, "full", "max"
    ),
    "compute": PhaseProfile(
        _fraction(697.6),
        99.9,
        33.6,
        96.3,
        14.2,
        93.5,
        25.7,
        0,
        1.4,
        8.6,
        18.4,
        True,
        "full",
        "capped",
    ),
    "memory": PhaseProfile(
        _fraction(380.6), 99.9, 100, 99.3, 79.6, 0, 89.9, 0, 5.6, 14.2, 30.7, True, "full", "max"
    ),
    "overhead": PhaseProfile(
        _fraction(125.2), 36.6, 0, 0.03, 0, 0, 0, 0, 0, 30.1, 234.9, True, "full", "max"
    ),
    "io": PhaseProfile(
        _fraction(128.7), 100, 2, 0, 0, 0, 1.6, 0, 0, 3357.2, 56179.1, True, "full", "max"
    ),
    "inference": PhaseProfile(
        _fraction(499.6),
        64.2,
        35.0,
        43.8,
        6.9,
        20.9,
        27.3,
        1.0,
        2.0,
        18.4,
        152.9,
        True,
        "full",
        "max",
    ),
}


# --- scenario file ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ThrottleReason = Literal[
    "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"
]
THROTTLE_BITS = {
    "hw_slowdown": 0x8,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}


class SimProcess(_Strict):
    pid: int = Field(gt=0)
    command: str = "python"
    memory_bytes: int = Field(default=4 * 1024**3, ge=0)
    container: str = ""
    pod: str = ""
    namespace: str = ""
    mig_instance: int | None = Field(default=None, ge=0)
    weight: float = Field(default=1.0, gt=0)


class SimPhase(_Strict):
    phase: PhaseName
    seconds: float = Field(gt=0)
    on_seconds: float = Field(default=2.0, gt=0)  # bursty only: compute burst length
    off_seconds: float = Field(default=3.0, gt=0)  # bursty only: idle gap length


class SimGpu(_Strict):
    model: str = "h100-sxm"
    energy_counter: bool | None = None  # None: as the model has it
    power_instant: bool | None = None
    mig: list[str] = Field(default_factory=list)
    processes: list[SimProcess] = Field(default_factory=list)
    schedule: list[SimPhase] = Field(default_factory=lambda: [SimPhase(phase="idle", seconds=60)])
    loop: bool = True
    noise: float = Field(default=0.01, ge=0, le=0.5)
    throttle: list[ThrottleReason] = Field(default_factory=list)  # extra clock event reasons
    lost_after_seconds: float | None = Field(default=None, ge=0)  # reads fail from then on
    # processes come and go: every `churn_every_seconds` each one is replaced by a new
    # identity (new pid, pod suffix), cycling through `churn_identities` of them
    churn_identities: int = Field(default=0, ge=0)
    churn_every_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SimGpu:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        model = MODELS[self.model]
        for profile in self.mig:
            try:
                model.mig_profile(profile)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        if self.mig and sum(model.mig_profile(p).compute_slices for p in self.mig) > 7:
            raise ValueError("MIG layout uses more than 7 compute slices")
        for process in self.processes:
            if process.mig_instance is not None and process.mig_instance >= len(self.mig):
                raise ValueError(f"process {process.pid}: no MIG instance {process.mig_instance}")
        return self


class Scenario(_Strict):
    seed: int = 0
    gpus: list[SimGpu] = Field(min_length=1)
    # true when the processes' pids are real processes on this machine (a demo that starts
    # them): host CPU and DRAM energy is then split among them by their CPU time
    local_pids: bool = False


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and key path."""


def load_scenario(path: Path | None) -> Scenario:
    """Read a scenario file (or the embedded demo); errors name the key path."""
    if path is None:
        text = resources.files("greenops_exporter").joinpath("scenarios/demo.yaml").read_text()
        source = "embedded demo scenario"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
        source = str(path)
    try:
        data = yaml.safe_load(text)
        return Scenario.model_validate(data)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {format_validation_error(exc)}") from exc
