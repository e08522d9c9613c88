"""The report as data: what every renderer prints and what `--format json` writes (the
contract is in the README's *Report* section; fields are added, never renamed)."""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Group:
    name: str
    gap: str | None  # why this row gathers series without the label (None: a real group)
    cost: float  # energy + rental, in the currency
    energy_cost: float
    rental_cost: float
    idle_cost: float  # held while idle: the group's own waste
    overhead_cost: float  # overhead-bound time
    energy_kwh: float
    gpu_hours: float  # held (a GPU shared by n processes: 1/n each)
    idle_gpu_hours: float
    stranded_gib_hours: float
    carbon_operational_g: float
    carbon_embodied_g: float
    greenest_saving_g: float | None  # None: no forecast recorded in the period
    cost_share: float  # of the fleet's GPU cost, 0..1


@dataclass(frozen=True)
class Fleet:
    cost: float
    energy_cost: float
    rental_cost: float
    pods_cost: float  # held by pods (greenops_gpu_holder_cost_total{holder="pod"})
    outside_pods_cost: float  # held by processes outside any pod
    unheld_cost: float  # no process held the GPU
    idle_cost: float  # every idle second, held or not
    overhead_cost: float
    energy_kwh: float
    unheld_idle_kwh: float
    gpu_hours: float
    pods_gpu_hours: float
    outside_pods_gpu_hours: float
    unheld_gpu_hours: float
    carbon_operational_g: float
    carbon_embodied_g: float
    gpus: int


@dataclass(frozen=True)
class Check:
    """groups + processes outside pods + unheld = the fleet's GPU cost, to the cent. The
    parts come from other series than the fleet's cost (pods' cost, the GPUs' cost by
    holder): the check compares, it does not fill in."""

    groups_cost: float
    outside_pods_cost: float
    unheld_cost: float
    parts_cost: float
    fleet_cost: float
    difference: float  # fleet - the parts; shown as "not attributed", never spread
    ok: bool


@dataclass(frozen=True)
class Inference:
    source: str
    model: str
    requests: float
    tokens: float
    energy_kwh: float
    joules_per_request: float | None
    joules_per_token: float | None


@dataclass(frozen=True)
class Recommendation:
    kind: str  # mig_rightsize | idle_while_held | greenest_window
    subject: str  # the GPU(s) or pod(s)
    text: str
    evidence_from: str  # RFC 3339
    evidence_to: str
    evidence_hours: float
    saving_cost: float | None
    saving_g: float | None


@dataclass(frozen=True)
class Day:
    end: str  # the bucket's end, RFC 3339
    cost: float
    unheld_cost: float
    groups: dict[str, float]
    carbon_operational_g: float
    carbon_embodied_g: float


@dataclass(frozen=True)
class Report:
    schema_version: int
    start: str
    end: str
    step_seconds: int
    bucket_seconds: int
    by: str
    currency: str
    groups: list[Group]
    fleet: Fleet
    check: Check
    inference: list[Inference]
    recommendations: list[Recommendation]
    trend: list[Day]
    notes: list[str] = field(default_factory=list)  # gaps, resets, partial answers
    queries: int = 0
