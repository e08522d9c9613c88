"""`analyze --as-exported`: a recording through the live estimator, as `serve` would export it.

The same Collector, EnergyMeter and replay backend as `serve` run on an injected clock at
the given collection and anchor intervals, so a user can weigh the counter reads (4 ms of
CPU each on an H100) against the accuracy of every window on their own recording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from greenops_exporter.analysis.energy import interpolate
from greenops_exporter.backends.replay import ReplayBackend
from greenops_exporter.collect import Collector, CollectSettings


@dataclass(frozen=True, slots=True)
class ExportedSeries:
    """The exported energy counter at each collection cycle, on the recording's clock."""

    times: tuple[float, ...]
    totals: tuple[float, ...]
    counter_reads: int


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _run(path: Path, settings: CollectSettings) -> ExportedSeries:
    clock = _Clock()
    # the counter only on the anchors' cadence: the estimator's error is what this shows
    backend = ReplayBackend([path], loop=False, clock=clock, exact_once=False)
    collector = Collector(backend, settings, "as-exported", monotonic=clock, wall_clock=clock)
    times: list[float] = []
    totals: list[float] = []
    reads = 0
    await collector.collect_once()  # opens the recording; its first reading anchors
    span: float | None = None
    ends = 0.0  # when the replay calls the recording over: its span and one sample interval
    while True:
        [device] = collector.snapshot.devices
        reading = device.reading
        if reading is not None and (not times or reading.timestamp > times[-1]):
            times.append(reading.timestamp)
            totals.append(device.energy_joules_total)
            reads += reading.energy_counter_joules is not None
        if span is None:
            recorded = backend.recording_times(0)
            span = recorded[-1] - recorded[0]
            ends = span + span / max(len(recorded) - 1, 1)
        if clock.now >= span or clock.now + settings.interval_seconds >= ends:
            # a cycle past the end would only find the recording over (and log a serve-time
            # `--no-replay-loop` stale warning for a flag this offline run never took)
            break
        clock.now += settings.interval_seconds
        await collector.collect_once()
    await collector.close()
    return ExportedSeries(tuple(times), tuple(totals), reads)


def exported_series(path: Path, collect_interval: float, anchor_interval: float) -> ExportedSeries:
    settings = CollectSettings(
        interval_seconds=collect_interval,
        device_timeout_seconds=max(collect_interval, 1.0),
        energy_anchor_seconds=anchor_interval,
        processes=False,
    )
    return asyncio.run(_run(path, settings))


@dataclass(frozen=True, slots=True)
class ExportedWindow:
    start: float  # the first collection cycle inside the window
    end: float  # the last one inside it
    exported_joules: float
    counter_joules: float

    @property
    def error_ratio(self) -> float:
        return (self.exported_joules - self.counter_joules) / self.counter_joules


def exported_window(
    series: ExportedSeries,
    counter_times: Sequence[float],
    counter_cumulative: Sequence[float],
    start: float,
    end: float,
) -> ExportedWindow | None:
    """The window as a scraper sees it: from the first to the last cycle inside it, the
    exported counter's increase against the true counter's over exactly that span."""
    inside = [i for i, t in enumerate(series.times) if start <= t <= end]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    t0, t1 = series.times[first], series.times[last]
    truth = interpolate(counter_times, counter_cumulative, t1) - interpolate(
        counter_times, counter_cumulative, t0
    )
    if truth <= 0:
        return None
    return ExportedWindow(t0, t1, series.totals[last] - series.totals[first], truth)
