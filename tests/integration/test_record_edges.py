"""`record`'s edges: where `--out` puts the files (a directory means inside it), what it
refuses before the backend starts, a disk that fills up mid-recording, saying that the
simulated fleet is simulated, and progress on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPLAY_ARGS, cli

ONE_L4 = "gpus:\n  - {model: l4}\n"


def record(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    options: dict[str, object] = {"capture_output": True} | kwargs
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "greenops_exporter", "record", *args],
        text=True,
        timeout=120,
        **options,
    )


def test_an_existing_directory_gets_the_files_inside_it(tmp_path: Path) -> None:
    """`--out /tmp` wrote `/tmp-gpu0.jsonl` … and `probe.json` beside the directory."""
    out = tmp_path / "out"
    out.mkdir()
    result = record(
        "--backend", "sim", "--collect-interval", "0.25", "--duration", "1", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    names = [f"gpu{i}.jsonl" for i in range(4)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "probe.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside it
    assert sorted(json.loads((out / "probe.json").read_text())["recordings"]) == names
    for name in names:
        assert f"{out / name}: " in result.stdout
        assert (out / name).read_text().count("\n") >= 4


@pytest.mark.parametrize(
    ("out", "said"),
    [
        ("", "--out '': expected a file (trace.jsonl) or a directory"),
        ("/dev/full", "--out /dev/full: /dev/full is not a regular file"),
        ("{tmp}/f/x.jsonl", "--out {tmp}/f/x.jsonl: directory {tmp}/f is not a directory"),
        ("{tmp}/x.jsonl", "--out {tmp}/x.jsonl: {tmp}/probe.json is not a regular file"),
        ("{tmp}/new/", "--out {tmp}/new/: directory {tmp}/new does not exist"),
    ],
)
def test_an_unwritable_out_is_refused_before_the_backend_starts(
    tmp_path: Path, out: str, said: str
) -> None:
    """`--out ''` was a traceback; `--out /dev/full` wrote `/dev/full-gpu0.jsonl` … into
    /dev. Exit 2 with one line naming it, before any log line of the backend starting."""
    (tmp_path / "f").write_text("a file, not a directory\n")
    (tmp_path / "probe.json").mkdir()
    out = out.replace("{tmp}", str(tmp_path))
    before = sorted(os.listdir("/dev"))
    result = record("--backend", "sim", "--duration", "1", "--out", out, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"greenops-exporter: {said.replace('{tmp}', str(tmp_path))}\n"
    assert sorted(os.listdir("/dev")) == before


def _file_size_limit(limit: int) -> None:
    # a real write failure, as on a full disk: past the limit write() fails with EFBIG
    # (Python ignores SIGXFSZ, so the process lives to report it)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_stops_at_the_first_failed_write_and_keeps_what_was_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "l4.yaml").write_text(ONE_L4)
    out = tmp_path / "r.jsonl"
    limit = 20_000
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenops_exporter",
            "record",
            "--backend",
            "sim",
            "--scenario",
            str(tmp_path / "l4.yaml"),
            "--collect-interval",
            "0.05",
            "--duration",
            "10m",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: _file_size_limit(limit),
    )
    assert result.returncode == 1, result.stderr
    failures = [line for line in result.stderr.splitlines() if "cannot write" in line]
    assert failures == [
        f"greenops-exporter: cannot write {out}: File too large: recording stopped, the "
        "samples written before are kept"
    ]
    assert "Traceback" not in result.stderr
    assert out.stat().st_size == limit  # written up to the failure, nothing truncated
    complete = out.read_bytes().count(b"\n")
    assert f"{out}: {complete} samples" in result.stdout
    # analyze reads every complete line and names the cut one
    analyzed = cli("analyze", str(out), "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    assert f"{out}:{complete + 1}: the last line is cut off (left out)" in analyzed.stderr


def test_the_simulated_fleet_is_called_simulated_in_the_output_and_probe_json(
    tmp_path: Path,
) -> None:
    """Its GPUs carry real boards' names (an H100's): nothing said they were simulated."""
    result = record(
        "--backend",
        "sim",
        "--collect-interval",
        "0.25",
        "--duration",
        "1",
        "--out",
        str(tmp_path / "t.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("recording simulated GPUs, not real ones (configured: sim")
    assert [line.endswith(" samples of a simulated GPU") for line in rest[:4]] == [True] * 4
    assert rest[4].endswith("for analyze and replay (marked simulated)")
    entries = json.loads((tmp_path / "probe.json").read_text())["recordings"]
    assert len(entries) == 4
    assert all(e["simulated"] is True for e in entries.values())
    # and analyze, reading that probe.json, says so too
    sim_gpu = json.loads(cli("analyze", str(tmp_path / "t-gpu0.jsonl"), "--json").stdout)["gpu"]
    assert sim_gpu["simulated"] is True
    assert sim_gpu["summary"].endswith("; simulated readings, not a real GPU's")
    text = cli("analyze", str(tmp_path / "t-gpu0.jsonl")).stdout
    assert "simulated readings, not a real GPU's" in text
    # a replayed recording is real readings: nothing said, nothing marked
    real = record(
        *REPLAY_ARGS,
        "--collect-interval",
        "0.25",
        "--duration",
        "1",
        "--out",
        str(tmp_path / "real_{gpu}.jsonl"),
    )
    assert real.returncode == 0, real.stderr
    assert "recording simulated" not in real.stdout and "a simulated GPU" not in real.stdout
    assert "(marked simulated)" not in real.stdout
    entries = json.loads((tmp_path / "probe.json").read_text())["recordings"]
    assert "simulated" not in entries["real_0.jsonl"]
    real_gpu = json.loads(cli("analyze", str(tmp_path / "real_0.jsonl"), "--json").stdout)["gpu"]
    assert real_gpu["simulated"] is False
    assert "simulated readings" not in real_gpu["summary"]


def test_progress_on_a_terminal_and_silence_elsewhere(tmp_path: Path) -> None:
    args = (
        "--backend",
        "sim",
        "--scenario",
        str(tmp_path / "l4.yaml"),
        "--collect-interval",
        "0.25",
        "--duration",
        "3",
    )
    (tmp_path / "l4.yaml").write_text(ONE_L4)
    main, terminal = pty.openpty()
    try:
        result = record(
            *args,
            "--out",
            str(tmp_path / "tty.jsonl"),
            stderr=terminal,
            stdout=subprocess.PIPE,
            capture_output=False,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert result.returncode == 0
    progress = [p for p in shown.decode().split("\r") if p.startswith("recording: ")]
    assert progress, shown
    # at once, then at most once a second: 0:00:00, 0:00:01, 0:00:02 of a 3 s recording
    assert progress[0].startswith("recording: 0:00:00 of 0:00:03, 1 samples, 0:00:02 left ")
    assert 2 <= len(progress) <= 3, progress
    counts = [int(p.split(", ")[1].split()[0]) for p in progress]
    assert counts == sorted(set(counts)), progress  # more samples each time
    assert shown.decode().endswith("\x1b[K\r\n")  # the line is ended before the summary
    piped = record(*args, "--out", str(tmp_path / "pipe.jsonl"))
    assert piped.returncode == 0 and "recording: " not in piped.stderr
    assert "\r" not in piped.stderr + piped.stdout
