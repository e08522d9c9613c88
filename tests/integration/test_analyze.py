"""`analyze` over the real H100 recording: each phase's energy within 2 % of phases_a.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakenvml import FIXTURES

PHASES = json.loads((FIXTURES / "phases_a.json").read_text())["phases"]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenops_exporter", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def windows() -> list[str]:
    return [arg for p in PHASES for arg in ("--window", f"{p['t0']}:{p['t1']}")]


def without_counter(tmp_path: Path) -> Path:
    """The same recording as a GPU without an energy counter would give it."""
    out = tmp_path / "no_counter.jsonl"
    lines = []
    for line in (FIXTURES / "trace_a.jsonl").read_text().splitlines():
        sample = json.loads(line)
        sample.pop("energy_mj")
        sample["fields"]["total_energy"] = {"nvml_return": 3}
        lines.append(json.dumps(sample))
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("counter", [True, False], ids=["counter", "instant-power"])
def test_phase_energy_within_2_percent(tmp_path: Path, counter: bool) -> None:
    recording = FIXTURES / "trace_a.jsonl" if counter else without_counter(tmp_path)
    result = analyze(str(recording), *windows(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["energy_source"] == ("counter" if counter else "instant_power")
    assert len(report["windows"]) == len(PHASES)
    for phase, window in zip(PHASES, report["windows"], strict=True):
        assert set(window) >= {"start", "end", "seconds", "energy_joules", "mean_power_watts"}
        assert window["start"] == pytest.approx(phase["t0"])
        assert window["energy_joules"] == pytest.approx(phase["energy_j"], rel=0.02), phase
        assert window["mean_power_watts"] == pytest.approx(
            window["energy_joules"] / window["seconds"], abs=0.002
        )


def test_whole_recording_and_table(tmp_path: Path) -> None:
    result = analyze(str(FIXTURES / "trace_a.jsonl"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "883 samples" in lines[0] and "energy from counter" in lines[0]
    assert lines[1].split() == ["start", "end", "seconds", "energy", "J", "mean", "W"]
    _start, _end, seconds, joules, _watts = (float(x) for x in lines[2].split())
    samples = [json.loads(x) for x in (FIXTURES / "trace_a.jsonl").read_text().splitlines()]
    truth = (samples[-1]["energy_mj"] - samples[0]["energy_mj"]) / 1000
    assert joules == pytest.approx(truth, abs=0.1)
    assert seconds == pytest.approx(samples[-1]["t"] - samples[0]["t"], abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "10"], "expected START:END"),
        (["--window", "a:b"], "must be numbers"),
        (["--window", "20:10"], "END must be after START"),
    ],
)
def test_bad_windows_exit_2(args: list[str], message: str) -> None:
    result = analyze(str(FIXTURES / "trace_a.jsonl"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_recording_exits_2(tmp_path: Path) -> None:
    result = analyze(str(tmp_path / "none.jsonl"))
    assert result.returncode == 2
    assert "none.jsonl" in result.stderr
