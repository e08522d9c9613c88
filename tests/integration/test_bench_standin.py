"""`make bench`'s machinery on real processes: each exporter runs on the live stand-in, is
scraped over HTTP, reports its NVML calls on SIGUSR1 and is counted by the OS; progress
shows on a terminal only."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakenvml import FIXTURES, load_trace
from fakenvml_live import phase_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from progress import Progress
from serve_bench import Result, Running, window

TRACE = load_trace(FIXTURES / "trace_a2.jsonl")
BUSY = phase_rows(TRACE, "compute_matmul_bf16")


def samples(body: bytes, name: str) -> list[float]:
    return [
        s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    ]


@pytest.fixture
def greenops(tmp_path: Path) -> Iterator[Running]:
    running = Running("greenops", 2, "busy", os.getpid(), tmp_path)
    yield running
    running.stop()


def test_greenops_serves_the_recorded_phase_and_counts_its_calls(greenops: Running) -> None:
    result = Result("greenops", 2, "busy")
    window([greenops], 2.5, True, [result])
    w = result.windows["scraped"][0]
    _seconds, body = greenops.scrape()
    watts = samples(body, "greenops_gpu_power_watts")
    recorded = {s["power_mw"] / 1000 for s in (TRACE[r] for r in BUSY)}
    assert len(watts) == 2 and all(value in recorded for value in watts)
    # one collection a second on each of the two GPUs: 2-3 cycles fit in 2.5 s (at least
    # one even on a loaded machine, and never more than the clock allows)
    assert 2 <= w.calls["nvmlDeviceGetPowerUsage"] <= 8
    assert w.charged["nvmlDeviceGetPowerUsage"] == w.calls["nvmlDeviceGetPowerUsage"]
    assert w.cpu > 0 and len(result.latencies) == 3 and result.series > 100


def test_nvitop_exporter_reads_the_same_standin(tmp_path: Path) -> None:
    pytest.importorskip("nvitop_exporter", reason="the bench extra: pip install -e '.[bench]'")
    running = Running("nvitop", 1, "busy", os.getpid(), tmp_path)
    try:
        result = Result("nvitop", 1, "busy")
        window([running], 2.5, False, [result])
        _seconds, body = running.scrape()
    finally:
        running.stop()
    recorded = {s["power_mw"] / 1000 for s in (TRACE[r] for r in BUSY)}
    [watts] = samples(body, "gpu_power_usage_W")
    assert watts in recorded
    assert samples(body, "gpu_power_limit_W") == [700.0]  # recorded in probe.json
    [fan] = samples(body, "gpu_fan_speed_Percentage")
    assert fan != fan  # NaN: the recording has no fan speed, the stand-in says NOT_SUPPORTED
    # our live pid is the GPU process, which nvitop found in /proc
    assert str(os.getpid()) in body.decode()
    calls = result.windows["none"][0].calls
    # each update asks the fan once and PCIe throughput twice (TX, RX), all unrecorded
    assert calls["nvmlDeviceGetFanSpeed"] >= 1 and calls["nvmlDeviceGetPcieThroughput"] >= 2


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_only() -> None:
    quiet = io.StringIO()
    progress = Progress(3, 60, stream=quiet)
    progress.step("1 GPU idle: warm-up")
    progress.done()
    assert quiet.getvalue() == ""
    tty = Tty()
    progress = Progress(3, 60, stream=tty)
    progress.step("1 GPU idle: warm-up")
    assert "[1/3] 1 GPU idle: warm-up (about 1 min left)" in tty.getvalue()
    progress.done()
    assert tty.getvalue().endswith("\r\x1b[K")
