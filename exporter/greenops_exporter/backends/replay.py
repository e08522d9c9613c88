"""Play recorded NVML readings (the fixtures format: one JSON object a line) as live devices.

The same parser feeds `analyze`, so a recording means the same thing online and offline.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greenops_exporter.backends.base import (
    BackendUnavailable,
    Capability,
    DeviceInfo,
    DeviceReadError,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.probe_file import recording_identity
from greenops_exporter.backends.recording_format import reading_from_sample
from greenops_exporter.config.errors import UsageError

log = logging.getLogger(__name__)


class RecordingError(UsageError, ValueError):
    """A recording that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Recording:
    path: Path
    readings: tuple[Reading, ...]
    phases: tuple[str, ...]  # the `phase` label of each sample ("" when absent)
    identity: Mapping[str, Any]  # from the probe.json beside the file ({} without one)
    probe: Path | None = None  # the probe.json the identity came from

    @property
    def times(self) -> list[float]:
        return [r.timestamp for r in self.readings]


def _sample(raw: bytes) -> dict[str, Any]:
    """One line's JSON object; anything else (bad bytes, a list, a number) is a ValueError."""
    try:
        sample = json.loads(raw.decode())
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start + 1})") from None
    if not isinstance(sample, dict):
        kind = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}
        raise ValueError(f"{kind.get(type(sample), 'a number')} where a JSON object belongs")
    return sample


def load_recording(path: Path) -> Recording:
    path = Path(path)
    readings: list[Reading] = []
    phases: list[str] = []
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from exc
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            sample = _sample(raw)
            reading = reading_from_sample(sample)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if number == len(lines) and readings:
                # no newline after it: `record` was stopped mid-write (a crash, a full
                # disk); every complete line before it still counts
                log.warning("%s:%d: the last line is cut off (left out): %s", path, number, exc)
                break
            raise RecordingError(f"{path}:{number}: not a recording sample: {exc}") from exc
        if readings and reading.timestamp < readings[-1].timestamp:
            raise RecordingError(f"{path}:{number}: time goes backwards")
        readings.append(reading)
        phases.append(str(sample.get("phase", "")))
    if not readings:
        raise RecordingError(f"{path}: no samples")
    if not any(r.power_samples for r in readings):
        # recordings made before the driver's samples were kept: each line's instant power
        # stands in as one sample at its own time
        readings = [
            replace(r, power_samples=((r.timestamp, r.power_instant_watts),))
            if r.power_instant_watts is not None
            else r
            for r in readings
        ]
    try:
        identity, probe = recording_identity(path)
    except ValueError as exc:
        raise RecordingError(str(exc)) from exc
    return Recording(path, tuple(readings), tuple(phases), identity, probe)


def _capabilities(readings: tuple[Reading, ...]) -> frozenset[Capability]:
    caps = {Capability.MEMORY, Capability.PROCESSES}
    checks: dict[Capability, Callable[[Reading], bool]] = {
        Capability.POWER_AVERAGE: lambda r: r.power_watts is not None,
        Capability.POWER_INSTANT: lambda r: r.power_instant_watts is not None,
        Capability.ENERGY_COUNTER: lambda r: r.energy_counter_joules is not None,
        Capability.UTILIZATION: lambda r: r.utilization_gpu is not None,
        Capability.TEMPERATURE: lambda r: r.temperature_celsius is not None,
        Capability.CLOCKS: lambda r: r.sm_clock_hertz is not None,
        Capability.PSTATE: lambda r: r.pstate is not None,
        Capability.CLOCK_EVENT_REASONS: lambda r: r.clock_event_reasons is not None,
        Capability.PCIE_COUNTERS: lambda r: r.pcie_tx_bytes is not None,
        Capability.GPM: lambda r: r.gpm is not None,
        Capability.POWER_SAMPLES: lambda r: bool(r.power_samples),
        Capability.PROCESS_UTILIZATION: lambda r: any(
            p.sm_utilization is not None for p in r.processes
        ),
    }
    for capability, check in checks.items():
        if any(check(r) for r in readings):
            caps.add(capability)
    return frozenset(caps)


class _ReplayDevice:
    def __init__(self, index: int, recording: Recording) -> None:
        self.recording = recording
        self.times = recording.times
        readings = recording.readings
        first, last = readings[0], readings[-1]
        step = (self.times[-1] - self.times[0]) / max(len(readings) - 1, 1)
        self.period = self.times[-1] - self.times[0] + step
        self.energy_per_loop = _delta(first.energy_counter_joules, last.energy_counter_joules)
        if last.energy_counter_joules is not None:
            self.energy_per_loop += (last.best_power_watts() or 0.0) * step
        self.tx_per_loop = _delta(first.pcie_tx_bytes, last.pcie_tx_bytes)
        self.rx_per_loop = _delta(first.pcie_rx_bytes, last.pcie_rx_bytes)
        self._served: tuple[int, int] | None = None
        ident = recording.identity
        self.info = DeviceInfo(
            index=index,
            uuid=str(ident.get("uuid") or f"REPLAY-{index}-{recording.path.stem}"),
            name=str(ident.get("name") or f"replay of {recording.path.name}"),
            pci_bus_id=str((ident.get("pci") or {}).get("busId") or f"replay:{index}"),
            memory_total_bytes=int(first.memory_total_bytes or 0),
            power_limit_watts=(
                ident["enforced_power_limit_mw"] / 1000.0
                if "enforced_power_limit_mw" in ident
                else None
            ),
            architecture={9: "hopper", 8: "ada", 7: "ampere"}.get(ident.get("arch", 0), "unknown"),
            mig_enabled=False,
            driver_version="replay",
            capabilities=_capabilities(readings),
        )

    def at(self, elapsed: float, loop: bool) -> Reading:
        """The latest sample at `elapsed` recording-seconds since the replay started, with
        the power samples of every line since the previous call (as the driver's buffer
        hands out what is new since the last read)."""
        readings = self.recording.readings
        if loop:
            loops, offset = divmod(max(elapsed, 0.0), self.period)
        else:
            loops, offset = 0.0, min(max(elapsed, 0.0), self.period)
        i = max(bisect.bisect_right(self.times, self.times[0] + offset) - 1, 0)
        position = (int(loops), i)
        samples = self._samples_since(self._served, position)
        self._served = position
        reading = replace(readings[i], power_samples=samples)
        if loops == 0:
            return reading
        return replace(
            reading,
            timestamp=reading.timestamp + loops * self.period,
            energy_counter_joules=_shift(
                reading.energy_counter_joules, loops * self.energy_per_loop
            ),
            pcie_tx_bytes=_shift_int(reading.pcie_tx_bytes, loops * self.tx_per_loop),
            pcie_rx_bytes=_shift_int(reading.pcie_rx_bytes, loops * self.rx_per_loop),
        )

    def at_end(self) -> bool:
        """Whether the last line has been served (on the first pass)."""
        return self._served is not None and self._served == (0, len(self.times) - 1)

    def _samples_since(
        self, served: tuple[int, int] | None, position: tuple[int, int]
    ) -> tuple[tuple[float, float], ...]:
        """Power samples of the lines after `served` up to `position` ((loop, line) pairs),
        shifted by whole loops so that they keep increasing; at most one loop's worth."""
        readings = self.recording.readings
        loop, line = position
        if served is None:
            first_loop, first_line = loop, line  # a fresh start: this line's samples only
        else:
            first_loop, first_line = served[0], served[1] + 1
        if (loop - first_loop) * len(readings) + line - first_line >= len(readings):
            first_loop, first_line = loop - 1, line + 1  # never more than one loop
        out: list[tuple[float, float]] = []
        at_loop, at_line = first_loop, first_line
        while (at_loop, at_line) <= (loop, line):
            if at_line >= len(readings):
                at_loop, at_line = at_loop + 1, 0
                continue
            shift = at_loop * self.period
            out += [(t + shift, w) for t, w in readings[at_line].power_samples]
            at_line += 1
        return tuple(out)


def _delta(first: float | None, last: float | None) -> float:
    return 0.0 if first is None or last is None else float(last - first)


def _shift(value: float | None, by: float) -> float | None:
    return None if value is None else value + by


def _shift_int(value: int | None, by: float) -> int | None:
    return None if value is None else int(value + by)


class ReplayBackend:
    """One device per recording file, at real speed or `speed` times faster."""

    name = "replay"
    local_pids = False  # recorded elsewhere

    def __init__(
        self,
        files: list[Path],
        speed: float = 1.0,
        loop: bool = True,
        clock: Callable[[], float] = time.monotonic,
        exact_once: bool = True,
    ) -> None:
        """`exact_once` (without `loop`): every read carries the recording's energy counter
        whatever the plan asks (NVML's counter is read every 30 s for its CPU cost; a
        file's costs nothing), and the last line is served even by a cycle that comes
        after the recording's end: the exported energy then follows the recording's own
        and freezes at its total. Without it, the meter's averaged-power estimate between
        anchors 30 s apart (on an L4, whose averaged power lags load by ~1 s) froze up to
        tens of per cent over a short recording's counter, and a counter cannot go back.
        `analyze --as-exported` turns it off: it is there to show the live estimator."""
        self._files = files
        self._exact_once = exact_once
        self._speed = speed
        self._loop = loop
        self._clock = clock
        self._devices: list[_ReplayDevice] = []
        self._start = 0.0
        self._ended: set[int] = set()
        self._ended_lock = threading.Lock()  # GPUs are read in parallel threads
        self._renamed: set[Path] = set()  # said once, though `serve` opens twice

    def open(self) -> list[DeviceInfo]:
        if not self._files:
            raise BackendUnavailable("replay needs at least one recording file")
        try:
            self._devices = [_ReplayDevice(i, load_recording(f)) for i, f in enumerate(self._files)]
        except RecordingError as exc:
            raise BackendUnavailable(str(exc)) from exc
        for device in self._devices:
            if device.period <= 0:  # nothing to play: one sample, or all at one instant
                raise BackendUnavailable(
                    f"{device.recording.path}: replay needs samples at two moments at least"
                )
        self._distinct_identities()
        self._start = self._clock()
        self._ended = set()
        return [d.info for d in self._devices]

    def _distinct_identities(self) -> None:
        """Two recordings whose probe.json gives them one GPU (its `static` entry, or the
        same file twice) would be two series sets with one uuid and bus id; the later ones
        get their own, and it is said once."""
        uuids: set[str] = set()
        buses: set[str] = set()
        for device in self._devices:
            info = device.info
            if info.uuid in uuids or info.pci_bus_id in buses:
                device.info = replace(
                    info, uuid=f"{info.uuid}-replay{info.index}", pci_bus_id=f"replay:{info.index}"
                )
                if device.recording.path not in self._renamed:
                    self._renamed.add(device.recording.path)
                    log.warning(
                        "replay: %s is of the same GPU (uuid %s, bus %s) as an earlier "
                        "recording (one probe.json entry for both): replayed as %s, bus %s",
                        device.recording.path,
                        info.uuid,
                        info.pci_bus_id,
                        device.info.uuid,
                        device.info.pci_bus_id,
                    )
            uuids.add(device.info.uuid)
            buses.add(device.info.pci_bus_id)

    def read(self, index: int, plan: ReadPlan) -> Reading:
        device = self._devices[index]
        elapsed = (self._clock() - self._start) * self._speed
        if not self._loop and elapsed >= device.period and self._exact_once and not device.at_end():
            elapsed = device.period  # a cycle late for the last line still serves it first
        elif not self._loop and elapsed >= device.period:
            # past its last sample and that sample's interval: no reading is current any
            # more, so the GPU goes stale (gauges gone, counters frozen, up 0) rather than
            # holding a power that no energy follows
            self._end(index, device)
            raise DeviceReadError(
                "recording_ended",
                f"recording {device.recording.path} ended after "
                f"{device.period:g} s (--no-replay-loop)",
            )
        reading = device.at(elapsed, self._loop)
        exact = self._exact_once and not self._loop  # the counter on every read: see __init__
        if not exact and not plan.energy_counter and reading.energy_counter_joules is not None:
            reading = replace(reading, energy_counter_joules=None)
        return reading

    def _end(self, index: int, device: _ReplayDevice) -> None:
        with self._ended_lock:  # two GPUs ending in the same cycle: "every" said once
            if index in self._ended:
                return
            self._ended.add(index)
            every = len(self._ended) == len(self._devices)
        log.info(
            "replay: recording %s (GPU %d) reached its end; its GPU is stale from now on",
            device.recording.path,
            index,
        )
        if every:
            log.info("replay: every recording has reached its end")

    def recording_times(self, index: int) -> list[float]:
        return self._devices[index].times

    def close(self) -> None:
        self._devices = []
