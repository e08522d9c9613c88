"""A window of a recording, analysed offline by the same code the live exporter runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from greenops_exporter.analysis.bottleneck import BottleneckClass, Thresholds
from greenops_exporter.analysis.efficiency import Efficiency
from greenops_exporter.analysis.energy import WindowEnergy, window_energy
from greenops_exporter.analysis.rightsizing import Advice, RightSize
from greenops_exporter.analysis.waste import WasteSettings
from greenops_exporter.backends.base import Reading
from greenops_exporter.facts.gpu_models import GpuModel


@dataclass(frozen=True, slots=True)
class WindowReport:
    energy: WindowEnergy
    class_share: dict[BottleneckClass, float]
    energy_by_class: dict[BottleneckClass, float]
    idle_joules_no_holder: float
    idle_joules_with_holder: float
    stranded_bytes_peak: int
    ops: float | None
    joules_per_op: float | None
    samples: int  # samples inside the window (its class mix, right-sizing and advice)
    right_size: RightSize | None
    advice: Advice | None


def analyze_window(
    readings: Sequence[Reading],
    cumulative: Sequence[float],
    start: float,
    end: float,
    ops: float | None = None,
    model: GpuModel | None = None,
    thresholds: Thresholds | None = None,
    waste: WasteSettings | None = None,
) -> WindowReport:
    times = [r.timestamp for r in readings]
    energy = window_energy(times, cumulative, start, end)
    efficiency = Efficiency(
        thresholds=thresholds or Thresholds(),
        waste=waste or WasteSettings(),
        model=model,
        advice_window_seconds=max(end - start, 1.0),
    )
    samples = dict.fromkeys(BottleneckClass, 0)
    by_class = dict.fromkeys(BottleneckClass, 0.0)
    idle_none = idle_held = 0.0
    stranded_peak = 0
    for i, reading in enumerate(readings):
        if reading.timestamp <= start:
            if i + 1 < len(readings) and readings[i + 1].timestamp > start:
                efficiency.update(reading, 0.0)  # the reading before: rates need a previous
            continue
        if i == 0:
            efficiency.update(reading, 0.0)
            continue
        t0, t1 = times[i - 1], reading.timestamp
        inside = max(0.0, min(t1, end) - max(t0, start))
        joules = (cumulative[i] - cumulative[i - 1]) * (inside / (t1 - t0) if t1 > t0 else 0.0)
        before_none, before_held = (
            efficiency.idle_joules_no_holder,
            efficiency.idle_joules_with_holder,
        )
        efficiency.update(reading, joules)
        idle_none += efficiency.idle_joules_no_holder - before_none
        idle_held += efficiency.idle_joules_with_holder - before_held
        assert efficiency.current is not None
        by_class[efficiency.current] += joules
        if reading.timestamp <= end:
            samples[efficiency.current] += 1
            stranded_peak = max(stranded_peak, efficiency.stranded_bytes)
        if reading.timestamp >= end:
            break
    total = sum(samples.values())
    share = {c: (n / total if total else 0.0) for c, n in samples.items()}
    per_op = energy.energy_joules / ops if ops else None
    # no sample inside the window: nothing was seen of its work, so no class, idle energy,
    # right-sizing or advice (what the accounts hold then is the neighbouring samples'):
    # its interpolated energy is booked as unknown
    seen = total > 0
    if not seen:
        by_class = dict.fromkeys(BottleneckClass, 0.0)
        by_class[BottleneckClass.UNKNOWN] = energy.energy_joules
        idle_none = idle_held = 0.0
    return WindowReport(
        energy=energy,
        class_share=share,
        energy_by_class=by_class,
        idle_joules_no_holder=idle_none,
        idle_joules_with_holder=idle_held,
        stranded_bytes_peak=stranded_peak,
        ops=ops,
        joules_per_op=per_op,
        samples=total,
        right_size=efficiency.right_size if seen else None,
        advice=efficiency.advice if seen else None,
    )
