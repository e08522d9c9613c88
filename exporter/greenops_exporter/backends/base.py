"""The contract every backend honours: discover devices once, then read one device at a time.

Readings are plain frozen values so that the collection loop can hand them to pure analysis
functions and publish them in an immutable snapshot without copying.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class Capability(enum.StrEnum):
    """What a device can report, probed once at start so that a missing feature is absent
    from the output rather than an error every cycle."""

    POWER_AVERAGE = "power_average"
    POWER_INSTANT = "power_instant"
    POWER_SAMPLES = "power_samples"
    ENERGY_COUNTER = "energy_counter"
    UTILIZATION = "utilization"
    MEMORY = "memory"
    TEMPERATURE = "temperature"
    CLOCKS = "clocks"
    PSTATE = "pstate"
    CLOCK_EVENT_REASONS = "clock_event_reasons"
    PCIE_COUNTERS = "pcie_counters"
    NVLINK_COUNTERS = "nvlink_counters"
    GPM = "gpm"
    PROCESSES = "processes"
    PROCESS_UTILIZATION = "process_utilization"
    MIG = "mig"


class ProcessUtilizationPolicy(enum.StrEnum):
    """When to pay for per-process utilisation (2.5 ms of CPU per call on an H100)."""

    WHEN_SHARED = "when_shared"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What one read should include; the collection loop decides, the backend obeys.

    The expensive NVML calls are opt-in per cycle so that the loop can read the energy
    counter only as an anchor every few seconds and integrate instant power in between.
    """

    energy_counter: bool = True
    process_utilization: ProcessUtilizationPolicy = ProcessUtilizationPolicy.WHEN_SHARED
    gpm: bool = True
    processes: bool = True
    mig: bool = True


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Static identity of one GPU, read once at discovery."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_total_bytes: int
    power_limit_watts: float | None
    architecture: str
    mig_enabled: bool
    driver_version: str
    capabilities: frozenset[Capability]

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True, slots=True)
class GpmReading:
    """GPU Performance Monitoring values over the interval since the previous read.

    Activity values are ratios 0..1 (NVML reports percent); rates are bytes per second
    (NVML reports MiB/s). A value NVML returned as NaN is None for that cycle.
    """

    sm_active: float | None = None
    sm_occupancy: float | None = None
    tensor_active: float | None = None
    hmma_tensor_active: float | None = None
    dram_active: float | None = None
    fp64_active: float | None = None
    fp32_active: float | None = None
    fp16_active: float | None = None
    integer_active: float | None = None
    graphics_active: float | None = None
    pcie_tx_bytes_per_second: float | None = None
    pcie_rx_bytes_per_second: float | None = None
    nvlink_tx_bytes_per_second: float | None = None
    nvlink_rx_bytes_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """A compute process on a GPU (or on one MIG instance of it)."""

    pid: int
    used_memory_bytes: int | None
    command: str = ""
    sm_utilization: float | None = None
    memory_utilization: float | None = None
    gpu_instance_id: int | None = None
    container: str = ""
    pod: str = ""
    namespace: str = ""
    container_id: str = ""  # "containerd://<id>", as kube-state-metrics writes it


@dataclass(frozen=True, slots=True)
class MigReading:
    """One MIG device (a compute instance inside a GPU instance)."""

    gpu_instance_id: int
    compute_instance_id: int
    uuid: str
    profile: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    sm_active: float | None = None  # SM activity, else engine activity: the split weight
    # the instance's own profiled ratios, where the source has them (dcgm-exporter does)
    graphics_active: float | None = None
    dram_active: float | None = None
    tensor_active: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One device's values at one moment.

    `timestamp` is seconds on the backend's monotonic clock (for replay, the recording's
    clock), which energy integration uses. Every value is None when the device does not
    support it or when this cycle's plan skipped it.
    """

    timestamp: float
    power_watts: float | None = None
    power_instant_watts: float | None = None
    energy_counter_joules: float | None = None
    utilization_gpu: float | None = None
    utilization_memory: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    sm_clock_hertz: float | None = None
    memory_clock_hertz: float | None = None
    pstate: int | None = None
    clock_event_reasons: int | None = None
    pcie_tx_bytes: int | None = None
    pcie_rx_bytes: int | None = None
    nvlink_tx_bytes: int | None = None
    nvlink_rx_bytes: int | None = None
    gpm: GpmReading | None = None
    processes: tuple[ProcessReading, ...] = ()
    mig_devices: tuple[MigReading, ...] = ()
    # The driver's own power samples since the last read (50 Hz on Hopper): (seconds on the
    # driver's clock, watts). Integrated between energy-counter anchors; never mixed with
    # `timestamp`, which is on another clock.
    power_samples: tuple[tuple[float, float], ...] = ()
    failed_calls: tuple[str, ...] = field(default=())

    def best_power_watts(self) -> float | None:
        """Instant power when the GPU offers it: the averaged value lags load by ~1 s."""
        if self.power_instant_watts is not None:
            return self.power_instant_watts
        return self.power_watts


class BackendUnavailable(Exception):
    """The backend cannot start (no driver, no library, bad scenario): nothing to read."""


class DeviceReadError(Exception):
    """A device could not be read this cycle; `call` names what failed, for the error metric."""

    def __init__(self, call: str, message: str) -> None:
        super().__init__(f"{call}: {message}")
        self.call = call
        self.message = message


class Backend(Protocol):
    """Blocking I/O: the collection loop calls these from a worker thread, never the loop."""

    name: str
    # whether the processes' pids are this machine's (their CPU time can be read): host
    # energy is split among GPU processes only then
    local_pids: bool

    def open(self) -> list[DeviceInfo]:
        """Discover devices; raise BackendUnavailable when there is nothing to talk to."""
        ...

    def read(self, index: int, plan: ReadPlan) -> Reading:
        """Read one device now; raise DeviceReadError when it cannot be read."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """Whether a backend's source answered its last request, and its failures by operation."""

    up: bool
    errors: Mapping[str, int]


@runtime_checkable
class RemoteBackend(Protocol):
    """A backend whose source is another process that can fail or change after open() (a
    page served by dcgm-exporter): after each cycle the collection loop asks whether it is
    up, and what each device looks like now (fields appear and disappear with its config)."""

    def health(self) -> BackendHealth: ...

    def device_info(self, index: int) -> DeviceInfo: ...
