"""The collection loop: read every device off the scrape path, publish an immutable Snapshot.

Collection runs on its own clock rather than on scrape, deliberately: energy and
class-time are integrals that need steady sampling whoever scrapes and how often; NVML
reads are slow and sometimes hang; and several scrapers (an HA Prometheus pair) must see
one consistent state. `/metrics` only renders the last Snapshot and never waits on NVML.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from .analysis.attribution import ExpiringTotals, IdleBaseline, PodKey, ProcessKey, split
from .analysis.bottleneck import BottleneckClass, Signals, Thresholds
from .analysis.carbon import ForecastPoint, GreenestWindow, greenest_window
from .analysis.efficiency import Efficiency
from .analysis.energy import EnergyMeter, EnergySource
from .analysis.footprint import WASTE_CLASSES, CycleFootprint, Footprint, FootprintSettings
from .analysis.inference import InferenceAccount, ModelEfficiency
from .analysis.rightsizing import Advice, RightSize
from .analysis.waste import WasteSettings
from .backends.base import (
    Backend,
    BackendUnavailable,
    DeviceInfo,
    DeviceReadError,
    ProcessReading,
    ProcessUtilizationPolicy,
    Reading,
    ReadPlan,
)
from .gpu_models import idle_watts_estimate, model_by_name
from .sources.base import PolledSource, SourceStatus
from .sources.carbon_intensity import CarbonChain, CarbonReading, Intensity
from .sources.inference import InferenceSource

# Fills in pod, namespace and container of a process (kubelet pod-resources, cgroups).
ProcessIdentifier = Callable[[DeviceInfo, Reading, ProcessReading], ProcessReading]

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CollectSettings:
    interval_seconds: float = 1.0
    device_timeout_seconds: float = 0.8
    energy_anchor_seconds: float = 10.0
    process_utilization: ProcessUtilizationPolicy = ProcessUtilizationPolicy.WHEN_SHARED
    backend_retry_seconds: float = 10.0
    gpm: bool = True
    processes: bool = True
    mig: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    waste: WasteSettings = field(default_factory=WasteSettings)
    identity_expire_seconds: float = 300.0
    advice_window_seconds: float = 3600.0
    footprint_for: Callable[[DeviceInfo], FootprintSettings] = lambda info: FootprintSettings()
    greenest_window_seconds: float = 4 * 3600.0
    greenest_within_seconds: float = 24 * 3600.0


@dataclass
class InferenceBinding:
    """An inference source, the GPUs whose energy it spends, and its account.

    `gpus` holds GPU indices (as text) or UUIDs; None means: wherever the server's own
    processes (`source.pids`) run, counting only their shares of each GPU's energy."""

    source: InferenceSource
    gpus: frozenset[str] | None
    account: InferenceAccount


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    backend: str
    backend_reason: str
    backend_up: bool
    devices: tuple[DeviceSnapshot, ...] = ()
    backend_errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    cycles_total: int = 0
    cycle_seconds: float = 0.0
    cycle_unix: float | None = None
    sources: tuple[SourceStatus, ...] = ()
    inference: tuple[InferenceSnapshot, ...] = ()
    intensity: Intensity | None = None
    greenest: GreenestWindow | None = None
    forecast_min_grams_per_kwh: float | None = None

    @property
    def ready(self) -> bool:
        return self.cycles_total > 0


@dataclass
class _DeviceState:
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
        )


class Collector:
    """Owns the backend, one worker thread per device, and the current Snapshot."""

    def __init__(
        self,
        backend: Backend,
        settings: CollectSettings | None = None,
        backend_reason: str = "",
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        identify: ProcessIdentifier | None = None,
        sources: Sequence[PolledSource[Any]] = (),
        inference: Sequence[InferenceBinding] = (),
        carbon: CarbonChain | None = None,
    ) -> None:
        self.carbon = carbon or CarbonChain([], "world")
        self.backend = backend
        self.identify = identify
        self.inference = list(inference)
        self.sources: list[PolledSource[Any]] = [
            *sources,
            *(b.source for b in self.inference),
            *self.carbon.sources,
        ]
        self._intensity = CarbonReading(self.carbon.static)  # until the first cycle
        self._greenest_for: tuple[ForecastPoint, ...] | None = None
        self._greenest: GreenestWindow | None = None
        self.settings = settings or CollectSettings()
        self.backend_reason = backend_reason
        self._wall = wall_clock
        self._monotonic = monotonic
        self._devices: list[_DeviceState] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._opened = False
        self._next_open = 0.0
        self._backend_errors: dict[str, int] = {}
        self._cycles = 0
        self._pods: ExpiringTotals[PodKey] = ExpiringTotals(self.settings.identity_expire_seconds)
        self.snapshot = Snapshot(backend.name, backend_reason, backend_up=False)

    # --- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        """Open the backend, or note why not and try again later (a driver may load late)."""
        if self._monotonic() < self._next_open:
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.run_in_executor(None, self.backend.open)
        except BackendUnavailable as exc:
            self._backend_errors["open"] = self._backend_errors.get("open", 0) + 1
            if self._backend_errors["open"] == 1:
                log.error(
                    "backend %s unavailable (retrying every %.0f s): %s",
                    self.backend.name,
                    self.settings.backend_retry_seconds,
                    exc,
                )
            self._next_open = self._monotonic() + self.settings.backend_retry_seconds
            return
        s = self.settings
        self._devices = [
            _DeviceState(
                info,
                Efficiency(
                    thresholds=s.thresholds,
                    waste=s.waste,
                    model=model_by_name(info.name),
                    advice_window_seconds=s.advice_window_seconds,
                ),
                ExpiringTotals(s.identity_expire_seconds),
                ExpiringTotals(s.identity_expire_seconds),
                IdleBaseline(idle_watts_estimate(info.name, info.power_limit_watts)),
                Footprint(s.footprint_for(info)),
                ExpiringTotals(s.identity_expire_seconds),
                ExpiringTotals(s.identity_expire_seconds),
                ExpiringTotals(s.identity_expire_seconds),
                ExpiringTotals(s.identity_expire_seconds),
            )
            for info in infos
        ]
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(len(infos), 1) + 2, thread_name_prefix="greenops-read"
        )
        self._opened = True
        if self._backend_errors.get("open"):
            log.info("backend %s is available now", self.backend.name)
        log.info("backend %s: %d device(s)", self.backend.name, len(infos))

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._opened:
            await asyncio.get_running_loop().run_in_executor(None, self.backend.close)
        self._opened = False

    # --- one cycle ------------------------------------------------------------------------

    def _plan(self, state: _DeviceState, now: float) -> ReadPlan:
        s = self.settings
        anchor = (
            state.last_anchor is None
            or not state.up
            or now - state.last_anchor >= s.energy_anchor_seconds
        )
        return ReadPlan(
            energy_counter=anchor,
            process_utilization=s.process_utilization,
            gpm=s.gpm,
            processes=s.processes,
            mig=s.mig,
        )

    def _timed_read(self, index: int, plan: ReadPlan) -> tuple[Reading, float]:
        """Runs in a worker thread: the backend's calls and the /proc reads of `identify`."""
        started = time.perf_counter()
        reading = self.backend.read(index, plan)
        if self.identify is not None and reading.processes:
            info = self._devices[index].info
            identify = self.identify
            reading = replace(
                reading, processes=tuple(identify(info, reading, p) for p in reading.processes)
            )
        return reading, time.perf_counter() - started

    async def collect_once(self) -> Snapshot:
        started = time.perf_counter()
        self._intensity = self.carbon.current()  # one intensity in force for the whole cycle
        if not self._opened:
            await self._open()
        if self._opened:
            await self._read_all()
            now = self._monotonic()
            for state in self._devices:
                for totals in (
                    state.processes,
                    state.pods,
                    state.pod_operational,
                    state.pod_embodied,
                    state.pod_cost,
                    state.pod_waste_cost,
                ):
                    totals.expire(now)
            for binding in self.inference:
                binding.account.add_energy(*self._binding_share(binding))
                binding.account.observe(binding.source.value, now)
        self._cycles += 1
        self.snapshot = Snapshot(
            backend=self.backend.name,
            backend_reason=self.backend_reason,
            backend_up=self._opened,
            devices=tuple(d.snapshot() for d in self._devices),
            backend_errors=MappingProxyType(dict(self._backend_errors)),
            cycles_total=self._cycles,
            cycle_seconds=time.perf_counter() - started,
            cycle_unix=self._wall(),
            sources=tuple(source.status() for source in self.sources),
            intensity=self._intensity.now,
            greenest=self._greenest_window(),
            forecast_min_grams_per_kwh=min(
                (p.grams_per_kwh for p in self.carbon.forecast()), default=None
            ),
            inference=tuple(
                InferenceSnapshot(
                    b.source.name,
                    b.source.kind,
                    b.account.energy_joules,
                    tuple(b.account.efficiency()),
                )
                for b in self.inference
            ),
        )
        return self.snapshot

    def _greenest_window(self) -> GreenestWindow | None:
        forecast = self.carbon.forecast()
        if forecast != self._greenest_for:
            self._greenest_for = forecast
            self._greenest = greenest_window(
                forecast,
                datetime.fromtimestamp(self._wall(), UTC),
                timedelta(seconds=self.settings.greenest_window_seconds),
                timedelta(seconds=self.settings.greenest_within_seconds),
            )
        return self._greenest

    def _binding_share(self, binding: InferenceBinding) -> tuple[float, float]:
        """This cycle's joules and grams (operational + embodied) of an inference source."""
        joules = grams = 0.0
        pids = binding.source.pids
        for state in self._devices:
            if binding.gpus is not None and not (
                {state.info.uuid, str(state.info.index)} & binding.gpus
            ):
                continue
            if binding.gpus is None or pids:
                part = sum(j for p, j in state.cycle_split if p.pid in pids)
            else:
                part = state.cycle_joules
            joules += part
            if state.cycle_footprint is not None and state.cycle_joules > 0:
                grams += state.cycle_footprint.grams * part / state.cycle_joules
        return joules, grams

    async def _read_all(self) -> None:
        assert self._executor is not None
        now = self._monotonic()
        for state in self._devices:
            state.cycle_joules, state.cycle_split, state.cycle_footprint = 0.0, [], None
        pending: dict[asyncio.Future[tuple[Reading, float]], _DeviceState] = {}
        for index, state in enumerate(self._devices):
            if state.in_flight is not None and not state.in_flight.done():
                # Still stuck in last cycle's read: never pile a second thread on it.
                state.count("deadline")
                self._mark_down(state, "read still hanging past its deadline")
                continue
            plan = self._plan(state, now)
            submitted = self._executor.submit(self._timed_read, index, plan)
            state.in_flight = submitted
            pending[asyncio.wrap_future(submitted)] = state
            if plan.energy_counter:
                state.last_anchor = now
        if not pending:
            return
        done, not_done = await asyncio.wait(pending, timeout=self.settings.device_timeout_seconds)
        for late in not_done:
            state = pending[late]
            state.count("deadline")
            state.last_anchor = None
            self._mark_down(
                state, f"read missed its {self.settings.device_timeout_seconds:g} s deadline"
            )
        for future in done:
            state = pending[future]
            state.in_flight = None
            exc = future.exception()
            if exc is None:
                reading, seconds = future.result()
                self._accept(state, reading, seconds)
            elif isinstance(exc, DeviceReadError):
                state.count(exc.call)
                state.last_anchor = None
                self._mark_down(state, str(exc))
            else:
                state.count("unexpected")
                state.last_anchor = None
                self._mark_down(state, f"unexpected {type(exc).__name__}: {exc}")

    def _accept(self, state: _DeviceState, reading: Reading, seconds: float) -> None:
        for call in reading.failed_calls:
            state.count(call)
        previous = state.reading
        joules = state.meter.update(reading)
        state.efficiency.update(reading, joules)
        seconds_since = 0.0 if previous is None else reading.timestamp - previous.timestamp
        idle = state.baseline.idle_joules(reading, seconds_since)
        now = self._monotonic()
        state.cycle_joules = joules
        state.cycle_split = split(reading, joules, idle)
        intensity = self._intensity.now.grams_per_kwh
        cycle = state.footprint.update(joules, seconds_since, intensity, state.efficiency.current)
        state.cycle_footprint = cycle
        for process, share in state.cycle_split:
            state.processes.add(
                ProcessKey(
                    state.info.uuid,
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
                state.pods.add(pod, share, now)
                part = cycle.share(share / joules if joules > 0 else 0.0)
                state.pod_operational.add(pod, part.operational_grams, now)
                state.pod_embodied.add(pod, part.embodied_grams, now)
                state.pod_cost.add(pod, part.cost, now)
                if state.efficiency.current in WASTE_CLASSES:
                    state.pod_waste_cost.add((pod, state.efficiency.current), part.cost, now)
        state.reading = reading
        state.read_seconds = seconds
        state.last_success_unix = self._wall()
        if not state.up:
            log.info("GPU %d (%s) is back", state.info.index, state.info.uuid)
        state.up = True
        state.stale_reason = ""

    def _mark_down(self, state: _DeviceState, reason: str) -> None:
        if state.up:
            log.warning("GPU %d (%s) is stale: %s", state.info.index, state.info.uuid, reason)
        state.up = False
        state.stale_reason = reason

    # --- the loop -------------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        after_cycle: Callable[[Snapshot], Awaitable[None]] | None = None,
    ) -> None:
        """Collect at a steady interval until `stop` is set; late cycles are skipped, not
        bunched, so a slow read never makes the loop spin. `after_cycle` runs on each new
        Snapshot (the server encodes /metrics there, off the scrape path)."""
        loop = asyncio.get_running_loop()
        interval = self.settings.interval_seconds
        next_tick = loop.time()
        while not stop.is_set():
            try:
                snapshot = await self.collect_once()
                if after_cycle is not None:
                    await after_cycle(snapshot)
            except Exception:  # the loop must outlive any single bad cycle
                log.exception("collection cycle failed")
            next_tick += interval
            if next_tick < loop.time():
                next_tick = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(next_tick - loop.time(), 0))
