"""What one collection cycle publishes: immutable values that /metrics and the status page read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from greenops_exporter.analysis.attribution import PodKey, ProcessKey
from greenops_exporter.analysis.bottleneck import BottleneckClass, Signals
from greenops_exporter.analysis.carbon import GreenestWindow
from greenops_exporter.analysis.energy import EnergySource
from greenops_exporter.analysis.inference import ModelEfficiency
from greenops_exporter.analysis.mig import InstanceVerdict
from greenops_exporter.analysis.rightsizing import Advice, RightSize
from greenops_exporter.backends.base import DeviceInfo, ProcessReading, Reading
from greenops_exporter.sources.base import SourceStatus
from greenops_exporter.sources.carbon_intensity import Intensity

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class InferenceSnapshot:
    name: str
    kind: str
    energy_joules: float
    models: tuple[ModelEfficiency, ...]


@dataclass(frozen=True, slots=True)
class Waste:
    """A GPU's efficiency and waste accounts at one moment (immutable copies)."""

    bottleneck: BottleneckClass | None = None
    signals: Signals | None = None
    class_seconds: Mapping[BottleneckClass, float] = field(default_factory=dict)
    class_joules: Mapping[BottleneckClass, float] = field(default_factory=dict)
    idle_joules_no_holder: float = 0.0
    idle_joules_with_holder: float = 0.0
    stranded: tuple[ProcessReading, ...] = ()
    underutilization_ratio: float | None = None
    pcie_tx_bytes_total: float = 0.0
    pcie_rx_bytes_total: float = 0.0
    right_size: RightSize | None = None
    advice: Advice | None = None
    instances: tuple[InstanceVerdict, ...] = ()  # under MIG: each instance's class and advice
    instance_seconds: Mapping[tuple[int, str, BottleneckClass], float] = field(default_factory=dict)
    mig_unallocated_ratio: float | None = None

    @property
    def stranded_bytes(self) -> int:
        return sum(p.used_memory_bytes or 0 for p in self.stranded)


@dataclass(frozen=True, slots=True)
class Costs:
    """A GPU's carbon and cost accounts (grams, currency units)."""

    operational_grams: float = 0.0
    embodied_grams: float = 0.0
    energy_cost: float = 0.0
    rental_cost: float = 0.0
    waste_cost: Mapping[BottleneckClass, float] = field(default_factory=dict)
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class PodCosts:
    operational_grams: float
    embodied_grams: float
    cost: float


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    info: DeviceInfo
    up: bool
    reading: Reading | None  # the last good reading (None before the first)
    energy_joules_total: float
    energy_source: EnergySource
    energy_counter_resets: int
    errors: Mapping[str, int]  # cumulative failures by NVML call (or "deadline")
    last_success_unix: float | None
    read_seconds: float | None
    stale_reason: str = ""
    waste: Waste = field(default_factory=Waste)
    process_energy: Mapping[ProcessKey, float] = field(default_factory=dict)
    pod_energy: Mapping[PodKey, float] = field(default_factory=dict)
    costs: Costs = field(default_factory=Costs)
    pod_costs: Mapping[PodKey, PodCosts] = field(default_factory=dict)
    pod_waste_cost: Mapping[tuple[PodKey, BottleneckClass], float] = field(default_factory=dict)
    holder_cost: Mapping[str, float] = field(default_factory=dict)  # pod | process | none
    holder_seconds: Mapping[str, float] = field(default_factory=dict)
    pod_gpu_seconds: Mapping[PodKey, float] = field(default_factory=dict)
    pod_gpu_idle_seconds: Mapping[PodKey, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostZoneSnapshot:
    zone: str
    package: str
    source: str  # counter | estimate
    energy_joules_total: float
    power_watts: float | None  # over the last interval; None while the zone is down
    up: bool
    errors: int


@dataclass(frozen=True, slots=True)
class HostUnsupported:
    capability: str  # rapl (no zones at all) | rapl_energy (a zone's counter)
    zone: str
    package: str
    reason: str


@dataclass(frozen=True, slots=True)
class HostProcessKey:
    pid: int
    command: str
    namespace: str
    pod: str
    container: str
    container_id: str
    zone: str  # package | dram
    source: str


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """The host's RAPL zones and its accounts. Keys: pod_energy (pod, zone, source);
    holder_energy (holder, zone, source); carbon_grams and cost (zone, source);
    pod_carbon_grams and pod_cost (pod, source). zone is package or dram there."""

    zones: tuple[HostZoneSnapshot, ...] = ()
    unsupported: tuple[HostUnsupported, ...] = ()
    process_energy: Mapping[HostProcessKey, float] = field(default_factory=dict)
    pod_energy: Mapping[tuple[PodKey, str, str], float] = field(default_factory=dict)
    holder_energy: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    carbon_grams: Mapping[tuple[str, str], float] = field(default_factory=dict)
    cost: Mapping[tuple[str, str], float] = field(default_factory=dict)
    pod_carbon_grams: Mapping[tuple[PodKey, str], float] = field(default_factory=dict)
    pod_cost: Mapping[tuple[PodKey, str], float] = field(default_factory=dict)
    currency: str = "USD"

    def energy(self, zone: str) -> tuple[float, str] | None:
        """Joules so far of a split zone (package or dram) summed over packages, and its
        source; None when nothing measures or estimates it."""
        parts = [z for z in self.zones if z.zone == zone]
        if not parts:
            return None
        return sum(z.energy_joules_total for z in parts), parts[0].source


@dataclass(frozen=True, slots=True)
class Snapshot:
    backend: str
    backend_reason: str
    backend_up: bool
    devices: tuple[DeviceSnapshot, ...] = ()
    backend_errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    cycles_total: int = 0
    skipped_cycles_total: int = 0
    cycle_seconds: float = 0.0
    cycle_unix: float | None = None
    sources: tuple[SourceStatus, ...] = ()
    inference: tuple[InferenceSnapshot, ...] = ()
    intensity: Intensity | None = None
    greenest: GreenestWindow | None = None
    forecast_min_grams_per_kwh: float | None = None
    host: HostSnapshot | None = None
    # while the backend is down: why (its last error) and since when (Unix time)
    backend_down_reason: str = ""
    backend_down_since: float | None = None

    @property
    def ready(self) -> bool:
        return self.cycles_total > 0
