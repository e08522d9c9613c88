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
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from greenops_exporter.analysis.attribution import ExpiringTotals, PodKey
from greenops_exporter.analysis.host import HostSample
from greenops_exporter.analysis.inference import InferenceAccount
from greenops_exporter.backends.base import (
    Backend,
    BackendUnavailable,
    DeviceReadError,
    Reading,
    ReadPlan,
    RemoteBackend,
)
from greenops_exporter.collect.clock import FixedRate
from greenops_exporter.collect.device import DeviceState, ProcessIdentifier
from greenops_exporter.collect.grid import GridInForce
from greenops_exporter.collect.handoff import all_done
from greenops_exporter.collect.host import HostCollection
from greenops_exporter.collect.settings import CollectSettings
from greenops_exporter.collect.snapshot import InferenceSnapshot, Snapshot
from greenops_exporter.sources.base import PolledSource
from greenops_exporter.sources.carbon_intensity import CarbonChain

if TYPE_CHECKING:  # loaded only where an inference server is configured (commands/wiring.py)
    from greenops_exporter.sources.inference import InferenceSource

log = logging.getLogger(__name__)


@dataclass
class InferenceBinding:
    """An inference source, the GPUs whose energy it spends, and its account.

    `gpus` holds GPU indices (as text) or UUIDs; None means: wherever the server's own
    processes (`source.pids`) run, counting only their shares of each GPU's energy."""

    source: InferenceSource
    gpus: frozenset[str] | None
    account: InferenceAccount


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
        # a runtime Protocol check walks the class's attributes: once, not every cycle
        self._remote = isinstance(backend, RemoteBackend)
        self.identify = identify
        self.inference = list(inference)
        self.sources: list[PolledSource[Any]] = [
            *sources,
            *(b.source for b in self.inference),
            *self.carbon.sources,
        ]
        self.settings = settings or CollectSettings()
        self.backend_reason = backend_reason
        self._wall = wall_clock
        self._grid = GridInForce(
            self.carbon,
            wall_clock,
            self.settings.greenest_window_seconds,
            self.settings.greenest_within_seconds,
        )
        self._monotonic = monotonic
        self._devices: list[DeviceState] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._opened = False
        self._next_open = 0.0
        self._backend_errors: dict[str, int] = {}
        self._down_reason = ""  # why the backend could not open, for the status page
        self._down_since: float | None = None
        self._cycles = 0
        self.skipped_cycles = 0
        self._pods: ExpiringTotals[PodKey] = ExpiringTotals(self.settings.identity_expire_seconds)
        host = self.settings.host
        # host energy is split among GPU processes only where their pids are this machine's
        self.host = HostCollection(host, monotonic) if host else None
        self._host_in_flight: asyncio.Future[HostSample] | None = None
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
            self._down_reason = str(exc)
            if self._backend_errors["open"] == 1 and math.isinf(
                self.settings.backend_retry_seconds
            ):
                # one-shot commands (`check`) never retry: no promise of a retry
                log.error("backend %s unavailable: %s", self.backend.name, exc)
            elif self._backend_errors["open"] == 1:
                log.error(
                    "backend %s unavailable (retrying every %.0f s): %s",
                    self.backend.name,
                    self.settings.backend_retry_seconds,
                    exc,
                )
            self._next_open = self._monotonic() + self.settings.backend_retry_seconds
            return
        self._devices = [DeviceState.new(info, self.settings, self.backend.name) for info in infos]
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(len(infos), 1) + 2, thread_name_prefix="greenops-read"
        )
        self._opened = True
        if self.host is not None:
            self.host.attribute = self.backend.local_pids
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

    def _plan(self, state: DeviceState, now: float) -> ReadPlan:
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
        self._grid.begin_cycle()  # one intensity for the whole cycle
        if not self._opened:
            await self._open()
        if self._opened:
            await self._read_all()
        await self._read_host()
        if self._opened:
            now = self._monotonic()
            for state in self._devices:
                for totals in (
                    state.processes,
                    state.pods,
                    state.pod_operational,
                    state.pod_embodied,
                    state.pod_cost,
                    state.pod_waste_cost,
                    state.pod_seconds,
                    state.pod_idle_seconds,
                ):
                    totals.expire(now)
            for binding in self.inference:
                binding.account.add_energy(*self._binding_share(binding))
                binding.account.observe(binding.source.value, now)
        self._cycles += 1
        backend_up, backend_errors = self._backend_health()
        down_reason = ""
        if backend_up:
            self._down_since = None
        else:
            self._down_since = self._down_since or self._wall()
            down_reason = self._down_reason if not self._opened else "its source did not answer"
        self.snapshot = Snapshot(
            backend=self.backend.name,
            backend_reason=self.backend_reason,
            backend_up=backend_up,
            devices=tuple(d.snapshot() for d in self._devices),
            backend_errors=MappingProxyType(backend_errors),
            cycles_total=self._cycles,
            skipped_cycles_total=self.skipped_cycles,
            cycle_seconds=time.perf_counter() - started,
            cycle_unix=self._wall(),
            sources=tuple(source.status() for source in self.sources),
            intensity=self._grid.intensity,
            greenest=self._grid.greenest(),
            forecast_min_grams_per_kwh=min(
                (p.grams_per_kwh for p in self._grid.forecast()), default=None
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
            host=self.host.snapshot() if self.host is not None else None,
            backend_down_reason=down_reason,
            backend_down_since=self._down_since,
        )
        return self.snapshot

    def _backend_health(self) -> tuple[bool, dict[str, int]]:
        """Opened is up, unless the backend reads another process that can fail later (the
        dcgm-exporter page): then its last answer says, and the devices follow its page."""
        errors = dict(self._backend_errors)
        if not self._opened or not self._remote:
            return self._opened, errors
        backend = cast(RemoteBackend, self.backend)
        for index, state in enumerate(self._devices):
            state.info = backend.device_info(index)
        health = backend.health()
        errors.update(health.errors)
        return health.up, errors

    def _binding_share(self, binding: InferenceBinding) -> tuple[float, float]:
        """This cycle's joules and grams (operational + embodied) of an inference source: its
        GPU energy, plus the host CPU and DRAM share of its GPU processes where RAPL measures
        it (an estimate never enters joules per request or SCI)."""
        joules = grams = 0.0
        pids = binding.source.pids
        host_pids: set[int] = set()
        for state in self._devices:
            if binding.gpus is not None and not (
                {state.info.uuid, str(state.info.index)} & binding.gpus
            ):
                continue
            if binding.gpus is None or pids:
                part = sum(j for p, j in state.cycle_split if p.pid in pids)
                host_pids |= {p.pid for p, _ in state.cycle_split if p.pid in pids}
            else:
                part = state.cycle_joules
                host_pids |= {p.pid for p, _ in state.cycle_split}
            joules += part
            if state.cycle_footprint is not None and state.cycle_joules > 0:
                grams += state.cycle_footprint.grams * part / state.cycle_joules
        if self.host is not None and host_pids:
            host_joules = self.host.measured_joules(host_pids)
            joules += host_joules
            grams += host_joules * self.host.cycle_grams_per_joule
        return joules, grams

    async def _read_host(self) -> None:
        """The host's RAPL zones and the GPU processes' CPU time, in a worker thread with the
        devices' deadline; a late read marks the zones stale and is never doubled up."""
        host = self.host
        if host is None:
            return
        loop = asyncio.get_running_loop()
        if host.meter is None:
            await loop.run_in_executor(self._executor, host.open)
        if not host.needed:
            return
        if self._host_in_flight is not None and not self._host_in_flight.done():
            host.missed("read still hanging past its deadline")
            return
        processes = [
            p for d in self._devices if d.up and d.reading is not None for p in d.reading.processes
        ]
        future = loop.run_in_executor(self._executor, host.sample, [p.pid for p in processes])
        self._host_in_flight = future
        try:
            sample = await asyncio.wait_for(
                asyncio.shield(future), timeout=self.settings.device_timeout_seconds
            )
        except TimeoutError:
            host.missed(f"read missed its {self.settings.device_timeout_seconds:g} s deadline")
            return
        except Exception as exc:  # the GPUs must not suffer from a broken host read
            host.missed(f"unexpected {type(exc).__name__}: {exc}")
            return
        host.accept(sample, processes, self._grid.grams_per_kwh())

    async def _read_all(self) -> None:
        assert self._executor is not None
        now = self._monotonic()
        for state in self._devices:
            state.cycle_joules, state.cycle_split, state.cycle_footprint = 0.0, [], None
        pending: dict[concurrent.futures.Future[tuple[Reading, float]], DeviceState] = {}
        for index, state in enumerate(self._devices):
            if state.in_flight is not None and not state.in_flight.done():
                # Still stuck in last cycle's read: never pile a second thread on it.
                state.count("deadline")
                state.mark_down("read still hanging past its deadline")
                continue
            plan = self._plan(state, now)
            submitted = self._executor.submit(self._timed_read, index, plan)
            state.in_flight = submitted
            pending[submitted] = state
            if plan.energy_counter:
                state.last_anchor = now
        if not pending:
            return
        waiter = all_done(pending, asyncio.get_running_loop())  # one wake-up, not one per GPU
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout=self.settings.device_timeout_seconds)
        done = [f for f in pending if f.done()]
        not_done = [f for f in pending if not f.done()]
        for late in not_done:
            state = pending[late]
            state.count("deadline")
            state.last_anchor = None
            state.mark_down(f"read missed its {self.settings.device_timeout_seconds:g} s deadline")
        for future in done:
            state = pending[future]
            state.in_flight = None
            exc = future.exception()
            if exc is None:
                reading, seconds = future.result()
                state.accept(
                    reading,
                    seconds,
                    self._monotonic(),
                    self._wall(),
                    self._grid.grams_per_kwh(),
                )
            elif isinstance(exc, DeviceReadError):
                state.count(exc.call)
                state.last_anchor = None
                state.mark_down(str(exc))
            else:
                state.count("unexpected")
                state.last_anchor = None
                state.mark_down(f"unexpected {type(exc).__name__}: {exc}")

    # --- the loop -------------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        after_cycle: Callable[[Snapshot], Awaitable[None]] | None = None,
    ) -> None:
        """Collect on a fixed grid of ticks until `stop` is set; ticks a slow cycle overran
        are skipped and counted, never run late or bunched. `after_cycle` runs on each new
        Snapshot (the server encodes /metrics there, off the scrape path)."""
        loop = asyncio.get_running_loop()
        clock = FixedRate(self.settings.interval_seconds, loop.time())
        while not stop.is_set():
            try:
                snapshot = await self.collect_once()
                if after_cycle is not None:
                    await after_cycle(snapshot)
            except Exception:  # the loop must outlive any single bad cycle
                log.exception("collection cycle failed")
            delay = clock.delay_to_next(loop.time())
            if clock.skipped != self.skipped_cycles:
                if self.skipped_cycles == 0:
                    log.warning(
                        "a collection cycle overran the %g s interval: ticks are skipped "
                        "(counted in greenops_collection_skipped_cycles_total)",
                        self.settings.interval_seconds,
                    )
                self.skipped_cycles = clock.skipped
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
