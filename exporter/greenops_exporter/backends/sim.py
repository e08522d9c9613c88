"""A simulated fleet, so the exporter, dashboards and alerts can be tried without a GPU.

Each simulated GPU follows a schedule of workload phases. A phase's readings are the
per-phase means measured on a real H100 (tests/fixtures/README.md), scaled to the model's
power envelope, with a little noise. Energy and PCIe counters are exact integrals of the
schedule's piecewise-constant power and traffic, so the counter stays consistent with the
power a scrape sees, the way the hardware's does. Everything is deterministic for a seed and
a sequence of clock readings.
"""

from __future__ import annotations

import bisect
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from greenops_exporter.backends.base import (
    Capability,
    DeviceInfo,
    DeviceReadError,
    GpmReading,
    MigReading,
    ProcessReading,
    ProcessUtilizationPolicy,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.scenario import (
    CONTEXT_BYTES,
    DRIVER_RESERVED_BYTES,
    GPU_IDLE,
    MIB,
    PROFILES,
    SW_POWER_CAP,
    THROTTLE_BITS,
    PhaseProfile,
    Scenario,
    ScenarioError,
    SimGpu,
    SimPhase,
    load_scenario,
)
from greenops_exporter.facts.gpu_models import MODELS, GpuModel

__all__ = ["Scenario", "ScenarioError", "SimBackend", "load_scenario"]


@dataclass(frozen=True, slots=True)
class _Segment:
    start: float
    profile: PhaseProfile
    power_watts: float
    # cumulative totals at `start` (joules, bytes, bytes)
    energy: float
    pcie_tx: float
    pcie_rx: float


class _SimDevice:
    def __init__(self, index: int, spec: SimGpu, seed: int) -> None:
        self.index = index
        self.spec = spec
        self.model: GpuModel = MODELS[spec.model]
        self.rng = random.Random(seed * 1_000_003 + index)
        self.uuid = "GPU-" + str(uuid.UUID(int=random.Random(f"{seed}/{index}").getrandbits(128)))
        self.has_counter = (
            self.model.has_energy_counter if spec.energy_counter is None else spec.energy_counter
        )
        self.has_instant = (
            self.model.has_power_instant if spec.power_instant is None else spec.power_instant
        )
        self.segments, self.cycle = self._expand(spec.schedule)
        self.starts = [s.start for s in self.segments]
        last = self.segments[-1]
        self.cycle_totals = self._advance(last, self.cycle - last.start)
        self.average_power: float | None = None
        self.last_time: float | None = None

    def _expand(self, schedule: list[SimPhase]) -> tuple[list[_Segment], float]:
        pieces: list[tuple[PhaseProfile, float]] = []
        for phase in schedule:
            if phase.phase == "bursty":
                left = phase.seconds
                on = True
                while left > 1e-9:
                    length = min(left, phase.on_seconds if on else phase.off_seconds)
                    pieces.append((PROFILES["compute" if on else "idle_context"], length))
                    left -= length
                    on = not on
            else:
                pieces.append((PROFILES[phase.phase], phase.seconds))
        segments: list[_Segment] = []
        t = energy = tx = rx = 0.0
        span = self.model.max_watts - self.model.idle_watts
        for profile, length in pieces:
            watts = self.model.idle_watts + profile.power_fraction * span
            segment = _Segment(t, profile, watts, energy, tx, rx)
            segments.append(segment)
            energy, tx, rx = self._advance(segment, length)
            t += length
        return segments, t

    @staticmethod
    def _advance(segment: _Segment, seconds: float) -> tuple[float, float, float]:
        p = segment.profile
        return (
            segment.energy + segment.power_watts * seconds,
            segment.pcie_tx + p.pcie_tx_mib_s * MIB * seconds,
            segment.pcie_rx + p.pcie_rx_mib_s * MIB * seconds,
        )

    def position(self, elapsed: float) -> tuple[_Segment, tuple[float, float, float]]:
        """The segment in force and the counters' totals at `elapsed` seconds."""
        if self.spec.loop:
            loops, offset = divmod(max(elapsed, 0.0), self.cycle)
        else:
            loops, offset = 0.0, max(elapsed, 0.0)
        segment = self.segments[bisect.bisect_right(self.starts, offset) - 1]
        e, tx, rx = self._advance(segment, offset - segment.start)
        ce, ctx, crx = self.cycle_totals
        return segment, (e + loops * ce, tx + loops * ctx, rx + loops * crx)

    def info(self, driver: str) -> DeviceInfo:
        caps = {
            Capability.POWER_AVERAGE,
            Capability.UTILIZATION,
            Capability.MEMORY,
            Capability.TEMPERATURE,
            Capability.CLOCKS,
            Capability.PSTATE,
            Capability.CLOCK_EVENT_REASONS,
            Capability.PCIE_COUNTERS,
            Capability.PROCESSES,
            Capability.PROCESS_UTILIZATION,
        }
        if self.has_counter:
            caps.add(Capability.ENERGY_COUNTER)
        if self.has_instant:
            caps.add(Capability.POWER_INSTANT)
        if self.model.has_gpm and not self.spec.mig:
            caps.add(Capability.GPM)
        if self.spec.mig:
            caps.add(Capability.MIG)
        return DeviceInfo(
            index=self.index,
            uuid=self.uuid,
            name=self.model.name,
            pci_bus_id=f"00000000:{0x10 + self.index:02X}:00.0",
            memory_total_bytes=self.model.memory_bytes,
            power_limit_watts=self.model.max_watts,
            architecture=self.model.architecture,
            mig_enabled=bool(self.spec.mig),
            driver_version=driver,
            capabilities=frozenset(caps),
        )

    def _noisy(self, value: float, scale: float) -> float:
        if value <= 0 or self.spec.noise == 0:
            return value
        return max(0.0, value * (1.0 + self.rng.gauss(0.0, self.spec.noise * scale)))

    def read(self, now: float, elapsed: float, plan: ReadPlan) -> Reading:
        segment, (energy, tx, rx) = self.position(elapsed)
        p = segment.profile
        model = self.model
        instant = self._noisy(segment.power_watts, 1.0)
        # NVML's averaged power lags by about a second on Hopper: a first-order filter.
        if self.average_power is None or self.last_time is None:
            self.average_power = instant
        else:
            alpha = 1.0 - math.exp(-max(now - self.last_time, 0.0) / 1.0)
            self.average_power += alpha * (instant - self.average_power)
        self.last_time = now

        processes = self._processes(p, plan, elapsed)
        memory_used = DRIVER_RESERVED_BYTES + sum(pr.used_memory_bytes or 0 for pr in processes)
        frac = p.power_fraction
        if p.clock == "idle":
            sm_clock = model.idle_sm_clock_mhz
        elif p.clock == "capped":
            sm_clock = model.max_sm_clock_mhz * 0.69
        else:
            sm_clock = model.max_sm_clock_mhz
        reasons = SW_POWER_CAP if p.clock == "capped" else (GPU_IDLE if p.clock == "idle" else 0)
        for reason in self.spec.throttle:
            reasons |= THROTTLE_BITS[reason]
        gpm = None
        if plan.gpm and model.has_gpm and not self.spec.mig:
            gpm = GpmReading(
                sm_active=_ratio(self._noisy(p.sm_active, 0.5)),
                sm_occupancy=_ratio(self._noisy(p.sm_occupancy, 0.5)),
                tensor_active=_ratio(self._noisy(p.tensor_active, 0.5)),
                hmma_tensor_active=_ratio(self._noisy(p.tensor_active, 0.5)),
                dram_active=_ratio(self._noisy(p.dram_active, 0.5)),
                fp64_active=0.0,
                fp32_active=_ratio(self._noisy(p.fp32_active, 0.5)),
                fp16_active=0.0,
                integer_active=_ratio(self._noisy(p.integer_active, 0.5)),
                graphics_active=_ratio(self._noisy(p.util_gpu, 0.5)),
                pcie_tx_bytes_per_second=self._noisy(p.pcie_tx_mib_s, 1.0) * MIB,
                pcie_rx_bytes_per_second=self._noisy(p.pcie_rx_mib_s, 1.0) * MIB,
                nvlink_tx_bytes_per_second=0.0,
                nvlink_rx_bytes_per_second=0.0,
            )
        return Reading(
            timestamp=now,
            power_watts=round(self.average_power, 3),
            power_instant_watts=round(instant, 3) if self.has_instant else None,
            energy_counter_joules=(
                round(energy, 3) if self.has_counter and plan.energy_counter else None
            ),
            utilization_gpu=_ratio(round(self._noisy(p.util_gpu, 0.3))),
            utilization_memory=_ratio(round(self._noisy(p.util_mem, 0.3))),
            memory_used_bytes=memory_used,
            memory_total_bytes=model.memory_bytes,
            temperature_celsius=float(round(32 + 25 * frac)),
            sm_clock_hertz=sm_clock * 1e6,
            memory_clock_hertz=model.memory_clock_mhz * 1e6,
            pstate=0,
            clock_event_reasons=reasons,
            pcie_tx_bytes=int(tx),
            pcie_rx_bytes=int(rx),
            gpm=gpm,
            processes=processes,
            mig_devices=self._mig(p, processes) if plan.mig else (),
        )

    def _processes(
        self, p: PhaseProfile, plan: ReadPlan, elapsed: float = 0.0
    ) -> tuple[ProcessReading, ...]:
        if not p.holds_context or not plan.processes:
            return ()
        specs = self.spec.processes
        if self.spec.churn_identities:
            k = int(elapsed // self.spec.churn_every_seconds) % self.spec.churn_identities
            specs = [
                s.model_copy(update={"pid": s.pid + k * len(specs), "pod": f"{s.pod or 'job'}-{k}"})
                for s in specs
            ]
        share_util = plan.process_utilization is ProcessUtilizationPolicy.ALWAYS or (
            plan.process_utilization is ProcessUtilizationPolicy.WHEN_SHARED and len(specs) > 1
        )
        total_weight = sum(s.weight for s in specs) or 1.0
        out = []
        for s in specs:
            memory = min(s.memory_bytes, CONTEXT_BYTES) if p.memory == "context" else s.memory_bytes
            share = s.weight / total_weight
            out.append(
                ProcessReading(
                    pid=s.pid,
                    used_memory_bytes=memory,
                    command=s.command,
                    sm_utilization=_ratio(p.util_gpu * share) if share_util else None,
                    memory_utilization=_ratio(p.util_mem * share) if share_util else None,
                    gpu_instance_id=None if s.mig_instance is None else s.mig_instance + 1,
                    container=s.container,
                    pod=s.pod,
                    namespace=s.namespace,
                )
            )
        return tuple(out)

    def _mig(
        self, p: PhaseProfile, processes: tuple[ProcessReading, ...]
    ) -> tuple[MigReading, ...]:
        out = []
        for i, name in enumerate(self.spec.mig):
            profile = self.model.mig_profile(name)
            gi = i + 1
            used = sum(pr.used_memory_bytes or 0 for pr in processes if pr.gpu_instance_id == gi)
            busy = any(pr.gpu_instance_id == gi for pr in processes)
            out.append(
                MigReading(
                    gpu_instance_id=gi,
                    compute_instance_id=0,
                    uuid="MIG-" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"{self.uuid}/{gi}")),
                    profile=name,
                    memory_used_bytes=used,
                    memory_total_bytes=profile.memory_bytes,
                    sm_active=_ratio(p.sm_active) if busy else 0.0,
                )
            )
        return tuple(out)


def _ratio(percent: float) -> float:
    return min(max(percent / 100.0, 0.0), 1.0)


class SimBackend:
    """Simulated GPUs; the clock is injected so tests and soak runs can go faster than life."""

    name = "sim"
    driver_version = "sim-1.0"

    def __init__(
        self,
        scenario: Scenario | None = None,
        scenario_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self._scenario = scenario
        self._scenario_path = scenario_path
        self._clock = clock
        self._seed = seed
        self._devices: list[_SimDevice] = []
        self._start = 0.0
        self.local_pids = False  # the scenario's, once opened

    def open(self) -> list[DeviceInfo]:
        scenario = self._scenario or load_scenario(self._scenario_path)
        seed = scenario.seed if self._seed is None else self._seed
        self._devices = [_SimDevice(i, gpu, seed) for i, gpu in enumerate(scenario.gpus)]
        self.local_pids = scenario.local_pids
        self._start = self._clock()
        return [d.info(self.driver_version) for d in self._devices]

    def read(self, index: int, plan: ReadPlan) -> Reading:
        now = self._clock()
        device = self._devices[index]
        lost_after = device.spec.lost_after_seconds
        if lost_after is not None and now - self._start >= lost_after:
            raise DeviceReadError("nvmlDeviceGetMemoryInfo", "GPU is lost (simulated)")
        return device.read(now, now - self._start, plan)

    def close(self) -> None:
        self._devices = []
