"""SIGTERM (a CI job's timeout) and SIGINT (Ctrl-C) on `measure`, `record` and the other
commands, sent for real to the CLI running as a subprocess: the command under `measure` gets
the signal and is waited for, the report of what ran is printed, recorded samples are kept,
nothing is left running, and the exit status is the shell's 128 + the signal's number."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

# How long to wait for a state the test needs before it signals (a file the command writes,
# a connection): a guard against hanging on a broken build, not a measured threshold.
HANG_GUARD_SECONDS = 60.0


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "greenops_exporter", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before {what}: {out}{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {HANG_GUARD_SECONDS} s")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def running(proc: subprocess.Popen[str], pid_files: list[Path]) -> Iterator[None]:
    """Whatever the outcome, nothing the test started stays behind."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for path in pid_files:
            if path.exists() and path.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(path.read_text()), signal.SIGKILL)


def measure(tmp_path: Path, script: str) -> subprocess.Popen[str]:
    return start(
        tmp_path,
        "measure",
        "--backend",
        "sim",
        "--collect-interval",
        "0.2",
        "--json",
        "m.json",
        "--csv",
        "e.csv",
        "--markdown",
        "m.md",
        "--",
        "sh",
        "-c",
        script,
    )


# the shell and a child of its own: a signal to the shell alone would orphan the sleep
SHELL_AND_CHILD = "echo $$ > sh.pid; sleep 45 & echo $! > sleep.pid; wait"


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_measure_forwards_the_signal_reports_and_leaves_no_orphan(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    proc = measure(tmp_path, SHELL_AND_CHILD)
    pids = [tmp_path / "sh.pid", tmp_path / "sleep.pid"]
    with running(proc, pids):
        wait_for("sleep.pid", lambda: all(p.exists() and p.read_text() for p in pids), proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
        assert proc.returncode == status, stderr
        for path in pids:
            assert gone(int(path.read_text())), f"{path.stem} still runs"
    assert "Traceback" not in stderr
    assert f"(exit {status}; interrupted by {sig.name}: measured until then)" in stderr
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["interrupted"] == sig.name
    assert data["exit_code"] == status  # sh ended by the signal measure forwarded
    assert data["duration_seconds"] > 0 and data["energy_joules"] > 0  # what ran is reported
    assert f"exit code {status}, interrupted by {sig.name}." in (tmp_path / "m.md").read_text()
    with open(tmp_path / "e.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert float(row["gpu_energy"]) > 0  # the exit code is in the JSON, not a CSV column


def test_measure_waits_for_the_command_to_finish_on_sigterm(tmp_path: Path) -> None:
    """A job that checkpoints on SIGTERM gets to finish: measure reports after it, with the
    command's own exit code, and exits 143 since it was itself terminated."""
    script = (
        "trap 'echo saved > checkpoint; exit 0' TERM; echo $$ > sh.pid; while :; do sleep 0.1; done"
    )
    proc = measure(tmp_path, script)
    pid = tmp_path / "sh.pid"
    with running(proc, [pid]):
        wait_for("sh.pid", lambda: pid.exists() and bool(pid.read_text()), proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
        saved = (tmp_path / "checkpoint").exists()  # as measure ended, not later
    assert proc.returncode == 143, stderr
    assert saved
    assert json.loads((tmp_path / "m.json").read_text())["exit_code"] == 0
    assert "(exit 0; interrupted by SIGTERM" in stderr


def test_measure_kills_a_command_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    script = "trap '' TERM; echo $$ > sh.pid; sleep 45 & echo $! > sleep.pid; wait"
    proc = measure(tmp_path, script)
    pids = [tmp_path / "sh.pid", tmp_path / "sleep.pid"]
    with running(proc, pids):
        wait_for("sleep.pid", lambda: all(p.exists() and p.read_text() for p in pids), proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
        assert proc.returncode == 143, stderr
        for path in pids:
            assert gone(int(path.read_text())), f"{path.stem} still runs"
    assert json.loads((tmp_path / "m.json").read_text())["exit_code"] == 137  # SIGKILL


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_record_keeps_every_sample_written_when_stopped(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    """Samples reach the file as they come (here three are read while it runs), a stop
    keeps them, and probe.json names only the files that have samples (GPU 1 is lost): the
    entry an earlier recording left for r-gpu1.jsonl goes, another recording's stays."""
    other = {"name": "NVIDIA H100 80GB HBM3"}
    earlier = {"recordings": {"r-gpu1.jsonl": {"name": "NVIDIA A100"}, "other.jsonl": other}}
    (tmp_path / "probe.json").write_text(json.dumps(earlier))
    (tmp_path / "sc.yaml").write_text(
        "gpus:\n  - {model: l4}\n  - {model: l4, lost_after_seconds: 0}\n"
    )
    args = ("--backend", "sim", "--scenario", "sc.yaml", "--collect-interval", "0.2")
    proc = start(tmp_path, "record", *args, "--duration", "10m", "--out", "r.jsonl")
    live, lost = tmp_path / "r-gpu0.jsonl", tmp_path / "r-gpu1.jsonl"

    def three_samples() -> bool:
        return live.exists() and live.read_text().count("\n") >= 3

    with running(proc, []):
        wait_for("three samples", three_samples, proc)
        seen = lines(live)  # complete lines only: each sample is written and flushed whole
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    kept = lines(live)
    assert kept[: len(seen)] == seen and len(kept) >= 3
    assert f"interrupted by {sig.name}: the samples so far are kept" in stdout
    assert f"{live.name}: {len(kept)} samples" in stdout
    assert lost.read_text() == "" and f"{lost.name}: 0 samples" in stdout
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert sorted(probe["recordings"]) == ["other.jsonl", live.name]
    assert probe["recordings"]["other.jsonl"] == other
    assert probe["recordings"][live.name]["name"] == "NVIDIA L4"


def test_record_refuses_a_missing_directory_before_the_backend_starts(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    proc = start(
        tmp_path, "record", "--backend", "sim", "--duration", "1", "--out", f"{missing}/x.jsonl"
    )
    _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 2, stderr
    assert stderr.strip() == (  # alone: no log line of the backend starting before it
        f"greenops-exporter: --out {missing}/x.jsonl: directory {missing} does not exist"
    )


def test_ctrl_c_on_any_other_command_is_one_line_and_130(tmp_path: Path) -> None:
    """carbon-gate waits on a live source that accepted the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        (tmp_path / "c.yaml").write_text(
            f"carbon:\n  zone: GB\n  sources:\n    - {{kind: uk, url: '{url}'}}\n"
        )
        proc = start(tmp_path, "carbon-gate", "--config", "c.yaml", "--max-intensity", "100")
        with running(proc, []):
            server.settimeout(HANG_GUARD_SECONDS)
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)  # the request is sent: the command waits on the answer
                proc.send_signal(signal.SIGINT)
                _, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "greenops-exporter: interrupted by SIGINT"
    assert "Traceback" not in stderr
