"""Replay of the H100 recording, and the energy arithmetic both online and offline."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakenvml import FIXTURES
from greenops_exporter.analysis.energy import (
    EnergyMeter,
    EnergySource,
    cumulative_energy,
    energy_source,
    interpolate,
    window_energy,
)
from greenops_exporter.backends.base import BackendUnavailable, Reading, ReadPlan
from greenops_exporter.backends.replay import RecordingError, ReplayBackend, load_recording
from greenops_exporter.collect import Collector, CollectSettings, Snapshot
from greenops_exporter.metrics import COLLECTOR_NAMES
from greenops_exporter.metrics.encode import Exposition
from helpers import cli

TRACE = FIXTURES / "trace_a.jsonl"
PHASES = json.loads((FIXTURES / "phases_a.json").read_text())["phases"]


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_recording_parses_into_readings_in_base_units() -> None:
    rec = load_recording(TRACE)
    assert len(rec.readings) == 883
    first = rec.readings[0]
    raw = json.loads(TRACE.read_text().splitlines()[0])
    assert first.power_watts == pytest.approx(raw["power_mw"] / 1000)
    assert first.energy_counter_joules == pytest.approx(raw["energy_mj"] / 1000)
    assert first.utilization_gpu == raw["util_gpu"] / 100
    assert first.gpm is not None and first.gpm.pcie_rx_bytes_per_second == pytest.approx(
        raw["gpm"]["pcie_rx_mib_s"] * 2**20
    )
    assert rec.identity["name"] == "NVIDIA H100 80GB HBM3"  # probe.json beside the trace
    assert set(rec.phases) >= {p["phase"] for p in PHASES}


def test_replay_at_real_speed_and_faster() -> None:
    clock = Clock()
    rec = load_recording(TRACE)
    t0 = rec.readings[0].timestamp
    for speed, wait, expect in ((1.0, 20.0, 20.0), (10.0, 2.0, 20.0), (4.0, 5.0, 20.0)):
        backend = ReplayBackend([TRACE], speed=speed, clock=clock)
        [info] = backend.open()
        assert info.name == "NVIDIA H100 80GB HBM3"
        clock.now += wait
        r = backend.read(0, ReadPlan())
        assert expect - 0.11 <= r.timestamp - t0 <= expect


def test_replay_loops_with_monotonic_counters() -> None:
    clock = Clock()
    backend = ReplayBackend([TRACE], speed=10.0, clock=clock)
    backend.open()
    readings = []
    for _ in range(60):  # 60 x 0.5 s x 10 = 300 recording-seconds: three loops
        clock.now += 0.5
        readings.append(backend.read(0, ReadPlan()))
    times = [r.timestamp for r in readings]
    energy = [r.energy_counter_joules for r in readings]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert all(b >= a for a, b in itertools.pairwise(energy))
    assert times[-1] - times[0] > 250


def head(lines: int, tmp_path: Path) -> Path:
    """The first `lines` samples of the H100 recording, as a file of its own."""
    out = tmp_path / f"first{lines}.jsonl"
    out.write_text("\n".join(TRACE.read_text().splitlines()[:lines]) + "\n")
    return out


def test_replay_without_loop_ends_each_recording_consistently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a recording is over its GPU reads as ended everywhere: stale (up 0, no gauges,
    so no power), its energy frozen at the recording's own total; the log says so once per
    recording, and that all have ended only when the last one has."""
    caplog.set_level(logging.INFO, logger="greenops_exporter.backends.replay")
    short, long = head(30, tmp_path), head(50, tmp_path)
    clock = Clock()
    backend = ReplayBackend([long, short], speed=10.0, loop=False, clock=clock)
    # the counter read every cycle, exactly (no spreading): the total is the counter's delta
    settings = CollectSettings(interval_seconds=0.005, energy_anchor_seconds=0.0)
    collector = Collector(backend, settings, "test", monotonic=clock, wall_clock=clock)
    recorded = {path: load_recording(path).readings for path in (long, short)}

    def ended_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.endswith("backends.replay")]

    async def run_until(recording_seconds: float) -> Snapshot:
        snap = collector.snapshot
        while clock.now - 50.0 < recording_seconds / 10.0:
            snap = await collector.collect_once()
            clock.now += 0.005  # 0.05 s of recording a cycle: every line is served
        return snap

    async def go() -> None:
        snap = await run_until(3.5)  # the 30-line recording (2.9 s + a step) is over
        up = [d.up for d in snap.devices]
        assert up == [True, False]
        gone = snap.devices[1]
        first, last = recorded[short][0], recorded[short][-1]
        assert gone.reading is not None and gone.reading.timestamp == last.timestamp
        assert last.energy_counter_joules is not None and first.energy_counter_joules is not None
        frozen = last.energy_counter_joules - first.energy_counter_joules
        assert gone.energy_joules_total == pytest.approx(frozen, abs=1e-9)
        assert "ended" in gone.stale_reason and str(short) in gone.stale_reason
        assert ended_lines() == [
            f"replay: recording {short} (GPU 1) reached its end; its GPU is stale from now on"
        ]
        text = Exposition(None, COLLECTOR_NAMES).encode(snap).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}

        def by_gpu(family: str, sample: str) -> dict[str, float]:
            return {s.labels["gpu"]: s.value for s in families[family].samples if s.name == sample}

        assert by_gpu("greenops_gpu_up", "greenops_gpu_up") == {"0": 1.0, "1": 0.0}
        assert set(by_gpu("greenops_gpu_power_watts", "greenops_gpu_power_watts")) == {"0"}
        energy = by_gpu("greenops_gpu_energy_joules", "greenops_gpu_energy_joules_total")
        assert energy["1"] == pytest.approx(frozen, abs=1e-6)
        later = await run_until(4.5)  # a second later: nothing moved on the ended GPU
        assert later.devices[1].energy_joules_total == gone.energy_joules_total
        assert later.devices[0].up
        assert not any("every recording" in line for line in ended_lines())
        snap = await run_until(6.0)  # the 50-line one is over too
        assert [d.up for d in snap.devices] == [False, False]
        assert ended_lines() == [
            f"replay: recording {short} (GPU 1) reached its end; its GPU is stale from now on",
            f"replay: recording {long} (GPU 0) reached its end; its GPU is stale from now on",
            "replay: every recording has reached its end",
        ]
        await collector.close()

    asyncio.run(go())


def test_replay_honours_the_energy_plan() -> None:
    backend = ReplayBackend([TRACE], clock=Clock())
    backend.open()
    assert backend.read(0, ReadPlan(energy_counter=False)).energy_counter_joules is None


def test_bad_recordings_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "power_mw": 1}\n{"power_mw": 2}\n')
    with pytest.raises(RecordingError, match=r"bad.jsonl:2"):
        load_recording(bad)
    with pytest.raises(BackendUnavailable, match=r"bad\.jsonl:2"):
        ReplayBackend([bad]).open()
    single = tmp_path / "single.jsonl"
    single.write_text('{"t": 5, "power_mw": 1}\n')
    with pytest.raises(BackendUnavailable, match=r"single\.jsonl: replay needs samples at two"):
        ReplayBackend([single], loop=False).open()
    backwards = tmp_path / "back.jsonl"
    backwards.write_text('{"t": 5}\n{"t": 1}\n')
    with pytest.raises(RecordingError, match="time goes backwards"):
        load_recording(backwards)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"[1, 2]", "an array where a JSON object belongs"),
        (b"42", "a number where a JSON object belongs"),
        (b'"t"', "a string where a JSON object belongs"),
        (b'{"t": 1, "phase": "\xff\xfe"}', "not UTF-8 text (byte 20)"),
    ],
)
def test_a_line_that_is_no_json_object_names_file_and_line(
    tmp_path: Path, line: bytes, said: str
) -> None:
    """issue 20: a JSON line that is not an object, or bytes that are not UTF-8, crashed
    `analyze` and `check --replay` (AttributeError, UnicodeDecodeError); a usage error
    (exit 2) naming the file and line instead, wherever the line is, even last."""
    for lines in ([b'{"t": 0}', line, b'{"t": 2}'], [b'{"t": 0}', line]):
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises(RecordingError) as caught:
            load_recording(bad)
        assert str(caught.value) == f"{bad}:2: not a recording sample: {said}"
    for command in (["analyze", str(bad)], ["check", "--replay", str(bad)]):
        result = cli(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"{bad}:2: not a recording sample: {said}" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_recording_cut_off_mid_line_keeps_every_complete_line(tmp_path: Path) -> None:
    """`record` killed mid-write leaves a last line with no newline and half a JSON object:
    the complete lines are read and the cut one is named in a warning, not the whole
    recording rejected."""
    lines = TRACE.read_bytes().split(b"\n")[:40]
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"\n".join(lines[:39]) + b"\n" + lines[39][: len(lines[39]) // 2])
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"\n".join(lines[:39]) + b"\n")
    assert load_recording(cut).readings == load_recording(whole).readings
    assert len(load_recording(cut).readings) == 39
    result = cli("analyze", str(cut), "--json")
    assert result.returncode == 0, result.stderr
    assert f"{cut}:40: the last line is cut off (left out)" in result.stderr
    assert json.loads(result.stdout)["windows"][0]["energy_joules"] == pytest.approx(
        json.loads(cli("analyze", str(whole), "--json").stdout)["windows"][0]["energy_joules"]
    )
    # a bad line that ends with its newline was written whole: still refused
    bad_last = tmp_path / "bad_last.jsonl"
    bad_last.write_bytes(b"\n".join(lines[:39]) + b"\n" + lines[39][:20] + b"\n")
    with pytest.raises(RecordingError, match=r"bad_last\.jsonl:40: not a recording sample"):
        load_recording(bad_last)


# --- offline windows ----------------------------------------------------------------------


@pytest.mark.parametrize("hide_counter", [False, True])
def test_every_phase_energy_within_2_percent(hide_counter: bool) -> None:
    readings = load_recording(TRACE).readings
    if hide_counter:
        readings = tuple(replace(r, energy_counter_joules=None) for r in readings)
    assert energy_source(readings) is (
        EnergySource.INSTANT_POWER if hide_counter else EnergySource.COUNTER
    )
    times = [r.timestamp for r in readings]
    cumulative = cumulative_energy(readings)
    for phase in PHASES:
        w = window_energy(times, cumulative, phase["t0"], phase["t1"])
        assert w.energy_joules == pytest.approx(phase["energy_j"], rel=0.02), phase["phase"]
        # the last phase ends 30 ms after the last sample: the window is clamped to the data
        assert w.seconds == pytest.approx(min(phase["t1"], times[-1]) - phase["t0"])


def test_window_is_clamped_to_the_recording() -> None:
    times = [0.0, 1.0, 2.0]
    cumulative = [0.0, 100.0, 300.0]
    assert window_energy(times, cumulative, -5, 10).energy_joules == 300.0
    assert window_energy(times, cumulative, 0.5, 1.5).energy_joules == pytest.approx(150.0)
    assert window_energy(times, cumulative, 5, 6).seconds == 0.0
    assert interpolate(times, cumulative, 1.25) == pytest.approx(150.0)


# --- the live meter -----------------------------------------------------------------------


def r(t: float, watts: float, counter: float | None = None, instant: bool = True) -> Reading:
    return Reading(
        timestamp=t,
        power_watts=watts,
        power_instant_watts=watts if instant else None,
        energy_counter_joules=counter,
    )


def test_meter_spreads_each_anchors_correction_over_the_observed_interval() -> None:
    m = EnergyMeter()
    assert m.update(r(0, 100, counter=1000)) == 0
    assert m.update(r(1, 100)) == pytest.approx(100)
    assert m.update(r(2, 100)) == pytest.approx(100)
    # the counter says 250 J went by, not 300: 50 J come off over the next 3 s (as long
    # as the last interval between anchors took), never held
    assert m.update(r(3, 100, counter=1250)) == pytest.approx(100)
    assert m.source is EnergySource.COUNTER
    for t in (4, 5, 6):
        assert m.update(r(t, 100)) == pytest.approx(100 - 50 / 3)
    assert m.update(r(7, 100)) == pytest.approx(100)
    assert m.total_joules == pytest.approx(650)  # = the counter's 250 J + 4 s of 100 W
    exact = EnergyMeter()  # anchors on consecutive readings: each cycle's own correction
    exact.update(r(0, 100, counter=1000))
    assert exact.update(r(1, 100, counter=1090)) == pytest.approx(90)
    assert exact.update(r(2, 100, counter=1260)) == pytest.approx(170)
    assert exact.total_joules == pytest.approx(260)


def test_meter_anchored_every_cycle_is_exact_at_every_reading() -> None:
    """dcgm-exporter's page carries the counter on every reading (as NVML does with an
    anchor interval of 0): each correction belongs to the cycle that just ended, so the
    exported total equals the counter's at every reading, with no lag and no smoothing."""
    m = EnergyMeter()
    counter = 0.0
    for t in range(60):
        counter += 200.0 if t % 2 else 100.0  # swinging power the trapezoid misses
        m.update(r(t, 120, counter=counter))
        assert m.total_joules == pytest.approx(counter - 100.0)  # the first only anchors


def test_meter_without_counter_uses_instant_then_average_power() -> None:
    m = EnergyMeter()
    m.update(r(0, 50))
    m.update(r(2, 150))
    assert m.total_joules == pytest.approx(200)
    assert m.source is EnergySource.INSTANT_POWER
    avg = EnergyMeter()
    avg.update(r(0, 80, instant=False))
    avg.update(r(10, 80, instant=False))
    assert avg.total_joules == pytest.approx(800)
    assert avg.source is EnergySource.AVERAGE_POWER


def test_meter_counter_reset_counts_and_integrates() -> None:
    m = EnergyMeter()
    m.update(r(0, 100, counter=5000))
    m.update(r(1, 100, counter=5100))
    m.update(r(2, 100, counter=30))  # reset
    m.update(r(3, 100, counter=130))
    assert m.resets == 1
    assert m.total_joules == pytest.approx(300)


def averaged_only(tmp_path: Path, counter: bool) -> Path:
    """30 lines of the trace (3 s, idle to a matmul, where averaged power lags most) as a GPU
    without instant power (an L4's NVML): averaged power only, with or without the counter."""
    out = tmp_path / f"avg-{counter}.jsonl"
    samples = []
    for line in TRACE.read_text().splitlines()[240:270]:
        sample = json.loads(line)
        sample["fields"].pop("power_instant", None)
        if not counter:
            sample.pop("energy_mj")
            sample["fields"].pop("total_energy", None)
        samples.append(json.dumps(sample))
    out.write_text("\n".join(samples) + "\n")
    return out


def frozen_total(path: Path, interval: float) -> tuple[float, float]:
    """`serve --backend replay --no-replay-loop` on an injected clock: the counter anchored
    every 30 s as live (so once, at the start, on a 3 s recording), collections every
    `interval` s; (the GPU's frozen exported energy, the recording's clock span served)."""
    clock = Clock()
    backend = ReplayBackend([path], loop=False, clock=clock)
    settings = CollectSettings(interval_seconds=interval, energy_anchor_seconds=30.0)
    collector = Collector(backend, settings, "test", monotonic=clock, wall_clock=clock)

    async def go() -> tuple[float, float]:
        snap = await collector.collect_once()
        first = snap.devices[0].reading
        while snap.devices[0].up:
            clock.now += interval
            snap = await collector.collect_once()
        await collector.close()
        [device] = snap.devices
        assert first is not None and device.reading is not None
        return device.energy_joules_total, device.reading.timestamp - first.timestamp

    return asyncio.run(go())


# 0.01 s: every line (0.1 s apart) served; 0.7 s: lines skipped, and the last line falls
# between two cycles (the one after it finds the recording over)
@pytest.mark.parametrize("interval", [0.01, 0.7])
def test_replay_once_freezes_at_the_recordings_counter_total(
    tmp_path: Path, interval: float
) -> None:
    """Averaged power only (it lags load by ~1 s) between anchors 30 s apart: the frozen
    total was the averaged-power estimate (+61 % here, +19 % on the trial's L4 recording),
    which a counter cannot take back. Played once, every read carries the recording's
    counter and the last line is always served: the total is the counter's delta, to float
    rounding (1e-6 J on ~500 J)."""
    path = averaged_only(tmp_path, counter=True)
    readings = load_recording(path).readings
    first, last = readings[0].energy_counter_joules, readings[-1].energy_counter_joules
    assert first is not None and last is not None
    total, span = frozen_total(path, interval)
    assert span == pytest.approx(readings[-1].timestamp - readings[0].timestamp)
    assert total == pytest.approx(last - first, abs=1e-6)
    # the averaged-power trapezoid alone is off by far more (+61 % here): the test tells
    estimate = cumulative_energy([replace(r, energy_counter_joules=None) for r in readings])[-1]
    assert estimate > 1.5 * (last - first)


def test_replay_once_without_counter_freezes_at_its_averaged_power_trapezoid(
    tmp_path: Path,
) -> None:
    """No counter: the recording's total is its own trapezoid of averaged power over its
    samples, what `analyze` computes (cumulative_energy); the meter serving every line agrees
    to float rounding. With lines skipped the meter's trapezoid is over fewer points, but the
    last line is still counted (the span served is the recording's)."""
    path = averaged_only(tmp_path, counter=False)
    readings = load_recording(path).readings
    truth = cumulative_energy(readings)[-1]
    total, span = frozen_total(path, 0.01)
    assert total == pytest.approx(truth, abs=1e-6)
    _, span = frozen_total(path, 0.7)
    assert span == pytest.approx(readings[-1].timestamp - readings[0].timestamp)
