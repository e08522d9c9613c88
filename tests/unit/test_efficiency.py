"""Bottleneck classes, waste and attribution on the recorded H100 and on sim scenarios."""

from __future__ import annotations

import collections
import json
from dataclasses import replace

import pytest

from fakenvml import FIXTURES
from greenops_exporter.analysis.attribution import (
    ExpiringTotals,
    IdleBaseline,
    split,
    split_among_processes,
)
from greenops_exporter.analysis.bottleneck import BottleneckClass, Signals, classify
from greenops_exporter.analysis.efficiency import Efficiency
from greenops_exporter.analysis.traffic import TrafficMeter, counter_delta
from greenops_exporter.analysis.waste import WasteSettings, underutilization
from greenops_exporter.backends.base import MigReading, ProcessReading, Reading
from greenops_exporter.backends.replay import load_recording
from helpers import EXPECTED_CLASS, run_sim

TRACE = FIXTURES / "trace_a.jsonl"
EXPECTED = EXPECTED_CLASS
PHASES = json.loads((FIXTURES / "phases_a.json").read_text())["phases"]


def class_mix(step: int, hide_gpm: bool) -> dict[str, collections.Counter[str]]:
    """Classes of the samples of each phase from 1.5 s after it starts."""
    rec = load_recording(TRACE)
    efficiency = Efficiency()
    starts: dict[str, float] = {}
    mix: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for reading, phase in list(zip(rec.readings, rec.phases, strict=True))[::step]:
        if hide_gpm:
            reading = replace(reading, gpm=None)
        efficiency.update(reading, 0.0)
        starts.setdefault(phase, reading.timestamp)
        if reading.timestamp - starts[phase] >= 1.5:
            assert efficiency.current is not None
            mix[phase][efficiency.current.value] += 1
    return mix


@pytest.mark.parametrize(
    ("step", "hide_gpm"),
    [(1, False), (1, True), (10, False), (10, True)],
    ids=["gpm-10Hz", "basic-10Hz", "gpm-1Hz", "basic-1Hz"],
)
def test_every_recorded_phase_falls_in_its_class(step: int, hide_gpm: bool) -> None:
    mix = class_mix(step, hide_gpm)
    assert set(mix) >= set(EXPECTED)
    for phase, want in EXPECTED.items():
        counts = mix[phase]
        share = counts[want] / sum(counts.values())
        assert share >= 0.9, (phase, dict(counts))


def test_signals_say_which_set_decided() -> None:
    rec = load_recording(TRACE)
    r = rec.readings[300]
    assert classify(r, None)[1] is Signals.GPM
    assert classify(replace(r, gpm=None), None)[1] is Signals.BASIC


def test_utilization_alone_would_lie() -> None:
    """PCIe copies read 100 % utilisation; only SM activity tells it is not compute."""
    rec = load_recording(TRACE)
    i = rec.phases.index("pcie_h2d_1gib") + 40
    r = rec.readings[i]
    assert r.utilization_gpu == 1.0
    assert classify(r, None)[0] is BottleneckClass.IO


def test_class_seconds_and_joules_add_up_over_the_recording() -> None:
    rec = load_recording(TRACE)
    from greenops_exporter.analysis.energy import EnergyMeter

    meter, efficiency = EnergyMeter(), Efficiency()
    for reading in rec.readings:
        efficiency.update(reading, meter.update(reading))
    seconds = sum(efficiency.class_seconds.values())
    assert seconds == pytest.approx(rec.readings[-1].timestamp - rec.readings[0].timestamp)
    assert sum(efficiency.class_joules.values()) == pytest.approx(meter.total_joules)
    phases = {p["phase"]: p for p in json.loads((FIXTURES / "phases_a.json").read_text())["phases"]}
    compute = efficiency.class_joules[BottleneckClass.COMPUTE]
    # the matmul phase, plus the ramps around it and the few batch-256 samples that reach
    # compute, and no more than that
    matmul = phases["compute_matmul_bf16"]["energy_j"]
    assert 0.98 * matmul <= compute <= matmul + 0.25 * phases["inference_mlp_batch256"]["energy_j"]
    # idle with a context (a process held memory) vs the short idle before any context
    assert efficiency.idle_joules_with_holder > 3 * efficiency.idle_joules_no_holder > 0


# --- PCIe counters -------------------------------------------------------------------------


def test_pcie_counter_wraps_at_32_bits() -> None:
    assert counter_delta(2**32 - 10, 5) == 15
    assert counter_delta(100, 250) == 150
    assert counter_delta(None, 5) is None
    assert counter_delta(2**40, 2**33) is None  # a 64-bit counter going back: a reset


def test_pcie_bytes_follow_gpm_rates_through_the_wrapping_counter() -> None:
    """At 55 GiB/s the 32-bit counter wraps several times per read; GPM rates do not."""
    rec = load_recording(TRACE)
    rows = [r for r, p in zip(rec.readings, rec.phases, strict=True) if p == "pcie_h2d_1gib"]
    with_gpm, without = TrafficMeter(), TrafficMeter()
    for r in rows:
        with_gpm.update(r)
        without.update(replace(r, gpm=None))
    seconds = rows[-1].timestamp - rows[0].timestamp
    assert with_gpm.rx_bytes / seconds / 2**30 == pytest.approx(51.5, rel=0.1)
    # the counter alone aliases (documented): it sees far less than really moved
    assert without.rx_bytes < with_gpm.rx_bytes / 2


# --- waste ---------------------------------------------------------------------------------


def test_underutilization_formula() -> None:
    assert underutilization(0.0, 0.8) == 1.0
    assert underutilization(0.4, 0.8) == pytest.approx(0.5)
    assert underutilization(0.95, 0.8) == 0.0


def reading(t: float, util: float, procs: tuple[ProcessReading, ...] = ()) -> Reading:
    return Reading(timestamp=t, utilization_gpu=util, utilization_memory=0.0, processes=procs)


def test_stranded_memory_after_the_configured_idle_time() -> None:
    holder = ProcessReading(pid=7, used_memory_bytes=30 << 30, command="jupyter", pod="nb")
    e = Efficiency(
        waste=WasteSettings(stranded_after_seconds=60, underutilization_window_seconds=30)
    )
    for t in range(0, 59):
        e.update(reading(float(t), 0.0, (holder,)), 1.0)
    assert e.stranded == ()
    e.update(reading(60.0, 0.0, (holder,)), 1.0)
    assert e.stranded == (holder,) and e.stranded_bytes == 30 << 30
    assert e.underutilization_ratio == 1.0
    e.update(reading(61.0, 0.9, (holder,)), 1.0)  # work again: nothing stranded
    assert e.stranded == ()
    for t in range(62, 200):
        e.update(reading(float(t), 0.4, (holder,)), 1.0)
    assert e.underutilization_ratio == pytest.approx(0.5)  # 0.4 against 0.8, last 30 s
    assert e.idle_joules_with_holder == 60 and e.idle_joules_no_holder == 0


# --- attribution ---------------------------------------------------------------------------


def proc(pid: int, sm: float | None, mem: int = 1 << 30, gi: int | None = None) -> ProcessReading:
    return ProcessReading(pid=pid, used_memory_bytes=mem, sm_utilization=sm, gpu_instance_id=gi)


def test_split_rules() -> None:
    assert split_among_processes(100, 40, [proc(1, None)]) == [100]
    # active 60 J by SM share 3:1, idle 40 J evenly
    assert split_among_processes(100, 40, [proc(1, 0.6), proc(2, 0.2)]) == pytest.approx([65, 35])
    # no SM shares: active by memory held
    parts = split_among_processes(100, 0, [proc(1, None, 3 << 30), proc(2, None, 1 << 30)])
    assert parts == pytest.approx([75, 25])
    assert split_among_processes(100, 0, []) == []


def test_mig_split_by_instance_then_process() -> None:
    r = Reading(
        timestamp=1.0,
        processes=(proc(1, None, gi=1), proc(2, None, gi=1), proc(3, None, gi=2)),
        mig_devices=(
            MigReading(1, 0, "MIG-1", "3g.40gb", 2 << 30, 40 << 30, sm_active=0.6),
            MigReading(2, 0, "MIG-2", "1g.10gb", 1 << 30, 10 << 30, sm_active=0.2),
        ),
    )
    parts = {p.pid: j for p, j in split(r, 100.0, 0.0)}
    assert parts == pytest.approx({1: 37.5, 2: 37.5, 3: 25.0})


def test_expiring_totals_bound_cardinality() -> None:
    totals: ExpiringTotals[int] = ExpiringTotals(expire_seconds=10)
    for i in range(100_000):
        totals.add(i, 1.0, now=float(i))
        if i % 1000 == 0:
            totals.expire(now=float(i))
    totals.expire(now=100_000.0)
    assert len(totals) <= 10


def test_per_process_and_pod_energy_sum_to_the_gpu_energy() -> None:
    spec = {
        "gpus": [
            {
                "processes": [
                    {"pid": 1, "weight": 3, "pod": "a", "namespace": "ns", "container": "c"},
                    {"pid": 2, "weight": 1, "pod": "b", "namespace": "ns", "container": "c"},
                ],
                "schedule": [{"phase": "compute", "seconds": 600}],
            }
        ]
    }
    snap = run_sim(spec, 60)
    [gpu] = snap.devices
    by_pid = {k.pid: j for k, j in gpu.process_energy.items()}
    first_interval = 0.0  # the very first reading has no interval before it
    assert sum(by_pid.values()) == pytest.approx(gpu.energy_joules_total - first_interval)
    assert by_pid[1] > 2 * by_pid[2]  # 3:1 SM shares of the active part, idle part evenly
    pods = {k.pod: j for k, j in gpu.pod_energy.items()}
    assert pods == pytest.approx({"a": by_pid[1], "b": by_pid[2]})


def test_demo_classes_and_waste() -> None:
    from greenops_exporter.backends.sim import load_scenario

    spec = load_scenario(None).model_dump()
    snap = run_sim(spec, 30, waste=WasteSettings(stranded_after_seconds=10))
    classes = [d.waste.bottleneck for d in snap.devices]
    assert classes[:3] == [BottleneckClass.COMPUTE, BottleneckClass.IDLE, BottleneckClass.MEMORY]
    stranded = snap.devices[1].waste
    assert stranded.stranded_bytes == 30 << 30
    assert [p.pod for p in stranded.stranded] == ["jupyter-alice"]
    assert stranded.underutilization_ratio == 1.0
    assert snap.devices[0].waste.underutilization_ratio == 0.0
    assert snap.devices[1].waste.idle_joules_with_holder > 0
    assert snap.devices[1].waste.signals is Signals.GPM
    assert snap.devices[2].waste.signals is Signals.BASIC  # the A100 has no GPM


# --- MIG right-sizing and advice ----------------------------------------------------------

GIB = 1 << 30


def test_smallest_profile_that_holds_the_work() -> None:
    from greenops_exporter.analysis.rightsizing import smallest_profile
    from greenops_exporter.facts.gpu_models import MODELS

    h100, a100_40, l4 = MODELS["h100-sxm"], MODELS["a100-40gb"], MODELS["l4"]
    assert smallest_profile(h100, 8 * GIB, 0.10).profile == "1g.10gb"
    assert smallest_profile(h100, 8 * GIB, 0.10).freed_ratio == pytest.approx(6 / 7)
    assert smallest_profile(h100, 15 * GIB, 0.10).profile == "1g.20gb"  # memory decides
    assert smallest_profile(h100, 15 * GIB, 0.30).profile == "3g.40gb"  # 0.33 > 2/7
    assert smallest_profile(h100, 70 * GIB, 0.10) is None  # only the whole GPU holds it
    assert smallest_profile(h100, 1 * GIB, 0.95) is None  # the SMs are all needed
    assert smallest_profile(a100_40, 4 * GIB, 0.1).profile == "1g.5gb"
    assert smallest_profile(l4, 1 * GIB, 0.0) is None  # no MIG on an L4
    assert smallest_profile(None, 1 * GIB, 0.0) is None


def sim_advice(phase: str, memory: int, **extra: object) -> tuple[str, object]:
    spec = {
        "gpus": [
            {
                "processes": [{"pid": 5, "memory_bytes": memory}],
                "schedule": [{"phase": phase, "seconds": 900}],
            }
        ]
    }
    snap = run_sim(spec, 120, **extra)
    w = snap.devices[0].waste
    assert w.advice is not None
    return w.advice.code, w.right_size


def test_advice_follows_the_work() -> None:
    assert sim_advice("overhead", 4 * GIB)[0] == "batch_or_fuse"
    assert sim_advice("memory", 60 * GIB)[0] == "raise_arithmetic_intensity"
    assert sim_advice("io", 60 * GIB)[0] == "overlap_transfers"
    assert sim_advice("compute", 60 * GIB)[0] == "shift_deferrable_work"
    code, _ = sim_advice(
        "stranded_memory", 30 * GIB, waste=WasteSettings(stranded_after_seconds=60)
    )
    assert code == "release_idle_allocation"
    code, right_size = sim_advice("idle_context", 4 * GIB)
    assert code == "release_idle_allocation"
    assert right_size is None  # no work seen: no slice can be sized for it


def test_an_idle_gpu_with_no_process_is_not_told_to_use_a_slice() -> None:
    """No work and no process: nothing to size a slice for (it was told "the work fits a
    MIG 1g.10gb slice: use it and free 86 % of the GPU")."""
    spec = {"gpus": [{"processes": [], "schedule": [{"phase": "idle", "seconds": 900}]}]}
    w = run_sim(spec, 120).devices[0].waste
    assert w.bottleneck is BottleneckClass.IDLE
    assert w.right_size is None
    assert w.advice is not None and w.advice.code == "consolidate"
    assert "MIG" not in w.advice.text


def test_a_window_without_a_sample_has_no_class_and_no_idle_energy() -> None:
    """A window shorter than the sampling interval (between two samples of the 10 Hz
    recording): its interpolated energy is booked as unknown, none of it as idle."""
    from greenops_exporter.analysis.energy import cumulative_energy
    from greenops_exporter.analysis.windows import analyze_window

    readings = load_recording(TRACE).readings
    cumulative = cumulative_energy(readings)
    i = next(i for i, r in enumerate(readings) if r.timestamp > 10.0)
    start = readings[i].timestamp + 0.01
    end = readings[i + 1].timestamp - 0.01
    report = analyze_window(readings, cumulative, start, end)
    assert report.samples == 0 and report.energy.energy_joules > 0
    assert report.idle_joules_no_holder == 0.0 and report.idle_joules_with_holder == 0.0
    assert report.energy_by_class[BottleneckClass.UNKNOWN] == report.energy.energy_joules
    assert sum(report.energy_by_class.values()) == report.energy.energy_joules
    assert report.right_size is None and report.advice is None


def test_small_inference_is_told_to_use_a_slice() -> None:
    """Batch-1 inference as recorded on the H100 (SM activity 0.29, a few GiB) fits a
    3g.40gb slice (3/7 of the SMs, 40 GB), as the README's `analyze` example shows: the
    live accounts say so and advise it beside batching."""
    from greenops_exporter.analysis.rightsizing import HEADROOM
    from greenops_exporter.facts.gpu_models import MODELS

    h100 = MODELS["h100-sxm"]
    rec = load_recording(TRACE)
    phase = next(p for p in PHASES if p["phase"] == "inference_mlp_batch1")
    rows = [r for r in rec.readings if phase["t0"] < r.timestamp <= phase["t1"]]
    e = Efficiency(model=h100, advice_window_seconds=phase["t1"] - phase["t0"])
    for r in rows:
        e.update(r, 0.0)
    # why 3g.40gb, from the recording: the peak SM activity with headroom needs more than
    # 2/7 of the SMs and no more than 3/7; the peak memory with headroom fits in 40 GB
    peak_sm = max(r.gpm.sm_active for r in rows if r.gpm and r.gpm.sm_active is not None)
    peak_memory = max(sum(p.used_memory_bytes or 0 for p in r.processes) for r in rows)
    assert 2 / 7 < peak_sm * HEADROOM <= 3 / 7
    assert peak_memory * HEADROOM <= h100.mig_profile("3g.40gb").memory_bytes
    assert e.right_size is not None
    assert e.right_size.profile == "3g.40gb"
    assert e.right_size.freed_ratio == pytest.approx(4 / 7)
    assert e.advice is not None and e.advice.code == "batch_or_fuse"
    assert e.advice.text.endswith("or run it on a MIG 3g.40gb slice")


def test_bursts_that_fill_the_gpu_get_no_slice() -> None:
    """Right-sizing covers the peak, not the mean: 1 s bursts of the recorded matmul (SM
    activity 0.96) every 10 s need every SM while they run, so no slice is named (one
    sized for the mean would stretch each burst 7-fold); the GPU, idle 90 % of the time
    while its process holds it, is told to release it between jobs instead."""
    spec = {
        "gpus": [
            {
                "processes": [{"pid": 5, "memory_bytes": 6 * GIB}],
                "schedule": [
                    {"phase": "bursty", "seconds": 900, "on_seconds": 1, "off_seconds": 9}
                ],
            }
        ]
    }
    snap = run_sim(spec, 120)
    assert snap.devices[0].waste.right_size is None
    assert snap.devices[0].waste.advice.code == "release_idle_allocation"


def test_record_format_round_trips() -> None:
    from greenops_exporter.backends.recording_format import (
        reading_from_sample,
        sample_from_reading,
    )

    rec = load_recording(TRACE)
    for r in rec.readings[::50]:
        back = reading_from_sample(sample_from_reading(r, r.timestamp, 0.0))
        assert back.power_watts == pytest.approx(r.power_watts)
        assert back.power_instant_watts == pytest.approx(r.power_instant_watts)
        assert back.energy_counter_joules == pytest.approx(r.energy_counter_joules)
        assert back.pcie_rx_bytes == r.pcie_rx_bytes
        assert back.memory_used_bytes == r.memory_used_bytes
        assert back.gpm.sm_active == pytest.approx(r.gpm.sm_active, abs=1e-5)
        assert [p.pid for p in back.processes] == [p.pid for p in r.processes]


def test_the_idle_baseline_is_the_lowest_power_seen_capped_by_the_models_idle() -> None:
    """Across the recorded H100's phases (idle near 78 W up to a 667 W matmul) the baseline
    is the lowest power seen so far, never a later higher one; a model cap below it wins."""
    readings = load_recording(FIXTURES / "trace_a2.jsonl").readings
    powers = [p for p in (r.best_power_watts() for r in readings) if p is not None]
    assert min(powers) < 100.0 < 600.0 < max(powers)  # the trace spans idle and full load
    baseline = IdleBaseline()
    for reading in readings:
        joules = baseline.idle_joules(reading, 2.0)
    assert baseline.watts == min(powers)
    assert joules == pytest.approx(2.0 * min(powers))
    capped = IdleBaseline(cap_watts=60.0)
    for reading in readings:
        joules = capped.idle_joules(reading, 1.0)
    assert capped.watts == 60.0 and joules == pytest.approx(60.0)
