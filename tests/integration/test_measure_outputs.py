"""`measure`'s outputs as a new user meets them: on the default backend's simulated fleet
every output says the GPUs are simulated; an output that cannot be written is refused
before the command runs, and one that fails after it loses neither report nor exit code."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from helpers import cli

SIM = ("--backend", "sim", "--collect-interval", "0.2")
JOB = ("--", "sh", "-c", "echo out; exit 3")


def test_every_output_says_the_sim_fleets_gpus_are_simulated(tmp_path: Path) -> None:
    files = {"json": tmp_path / "m.json", "csv": tmp_path / "e.csv", "md": tmp_path / "m.md"}
    result = cli(
        "measure",
        *SIM,
        "--json",
        str(files["json"]),
        "--csv",
        str(files["csv"]),
        "--markdown",
        str(files["md"]),
        # long enough for the kernel's CPU times (10 ms ticks) to move: a run shorter than
        # a tick has no CPU share, an empty cell
        *("--", "sh", "-c", "echo out; sleep 0.3; exit 3"),
    )
    assert result.returncode == 3, result.stderr
    assert "on 4 simulated GPU(s) (backend sim: not this machine's GPUs)" in result.stderr
    (gpu,) = [line for line in result.stderr.splitlines() if line.startswith("  GPU")]
    assert gpu.startswith("  GPU (simulated) ")
    data = json.loads(files["json"].read_text())
    assert (data["backend"], data["simulated"], data["gpu_kind"]) == ("sim", True, "simulated")
    with open(files["csv"], newline="") as f:
        (row,) = csv.DictReader(f)
    models = row["gpu_model"]  # the demo fleet: two H100s, an A100 and an L4
    assert models.count("(simulated)") == 3 and models.startswith("2 x NVIDIA H100")
    # CodeCarbon's utilisation columns, the run's means (the JSON's `usage`)
    usage = data["usage"]
    for key in ("cpu_utilization_percent", "gpu_utilization_percent", "ram_utilization_percent"):
        assert 0 <= float(row[key]) <= 100 and float(row[key]) == usage[key], key
    assert 0 < float(row["ram_used_gb"]) <= float(row["ram_total_size"])
    assert float(row["gpu_utilization_percent"]) > 0  # the demo fleet is busy
    md = files["md"].read_text()
    assert "| GPU x 4 (simulated) |" in md and "**The GPUs are simulated**" in md


@pytest.mark.parametrize(
    ("flag", "path", "why"),
    [
        ("--json", "/nonexistent/x.json", "No such file or directory"),
        ("--markdown", "/nonexistent/x.md", "No such file or directory"),
        ("--csv", "/nonexistent/e.csv", "No such file or directory"),
        ("--json", "/tmp", "is a directory"),
    ],
)
def test_an_unwritable_output_is_refused_before_the_command_runs(
    tmp_path: Path, flag: str, path: str, why: str
) -> None:
    marker = tmp_path / "ran"
    job = ("--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    result = cli("measure", *SIM, flag, path, *job)
    assert result.returncode == 2, result.stderr
    assert f"{flag} {path}" in result.stderr and why in result.stderr
    assert not marker.exists()


def test_a_checked_output_creates_no_file_of_its_own(tmp_path: Path) -> None:
    """The check opens the file as the write will; a refused run leaves nothing behind."""
    out = tmp_path / "m.json"
    result = cli("measure", *SIM, "--json", str(out), "--markdown", "/nonexistent/x", *JOB)
    assert result.returncode == 2 and not out.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_that_fails_after_the_run_goes_to_stdout_with_the_exit_code() -> None:
    """/dev/full opens for writing and fails on write: the check passes, the write fails."""
    result = cli("measure", *SIM, "--json", "/dev/full", "--markdown", "/dev/full", *JOB)
    assert result.returncode == 3, result.stderr  # the command's, not measure's
    assert "--json /dev/full: cannot write (No space left on device)" in result.stderr
    out = result.stdout
    assert out.startswith("out\n")  # the command's own output first
    report = json.loads(out[len("out\n") : out.index("}\n### ") + 2])
    assert report["exit_code"] == 3 and report["gpu_kind"] == "simulated"
    assert "| GPU x 4 (simulated) |" in out
