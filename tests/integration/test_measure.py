"""`measure` at CodeCarbon's scope, as a CI job runs it: a real command on the replayed H100
with a powercap tree in the kernel's layout; the CodeCarbon-format CSV parsed back with the
csv module, the markdown table, the JSON keys; RAPL missing or root-only says
`unavailable`, never 0 kWh; and the example CI workflow uses only flags and keys that exist."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import shlex
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from greenops_exporter.analysis.host import ram_watts
from greenops_exporter.backends.sim import Scenario, SimBackend
from greenops_exporter.cli import build_parser
from greenops_exporter.collect import CollectSettings
from greenops_exporter.collect.settings import HostSettings
from greenops_exporter.commands import codecarbon
from greenops_exporter.commands.measure import measure
from greenops_exporter.config.models import load_config
from greenops_exporter.sources import rapl
from greenops_exporter.sources.carbon_intensity import CarbonChain
from helpers import REPLAY_ARGS, cli
from powercap import INTEL_2S, FakePowercap

ROOT = Path(__file__).resolve().parents[2]
KWH = 3.6e6
# The command under measure plays the hardware: it adds energy to the counters as it runs.
WORK = """
import sys, time
from pathlib import Path
root = Path(sys.argv[1])
for zone, joules in (("intel-rapl:0", 300), ("intel-rapl:1", 100),
                     ("intel-rapl:0/intel-rapl:0:2", 30), ("intel-rapl:1/intel-rapl:1:0", 10)):
    path = root / zone / "energy_uj"
    if path.exists():  # no tree: a node without RAPL
        path.write_text(str(int(path.read_text()) + joules * 10**6))
time.sleep(1.0)
"""


def run_measure(tmp_path: Path, powercap: Path, *extra: str) -> tuple[int, str, dict]:
    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon: {zone: GB, pue: 1.2}\ncost: {energy_price_per_kwh: 0.30}\n"
        f"host: {{powercap_root: '{powercap}'}}\n"
    )
    out = tmp_path / "m.json"
    result = cli(
        "measure",
        "--config",
        str(config),
        "--json",
        str(out),
        *REPLAY_ARGS,
        "--collect-interval",
        "0.2",
        *extra,
        "--",
        sys.executable,
        "-c",
        WORK,
        str(powercap),
    )
    return result.returncode, result.stderr, json.loads(out.read_text())


def test_gpu_cpu_dram_in_json_csv_and_markdown(tmp_path: Path) -> None:
    FakePowercap(tmp_path / "pc", INTEL_2S)
    emissions = tmp_path / "emissions.csv"
    table = tmp_path / "energy.md"
    files = ("--csv", str(emissions), "--markdown", str(table), "--project-name", "llm")
    code, stderr, _ = run_measure(tmp_path, tmp_path / "pc", *files)
    assert code == 0, stderr
    code, stderr, data = run_measure(tmp_path, tmp_path / "pc", *files)  # a second appends
    assert code == 0, stderr
    parts = data["parts"]
    assert parts["cpu"]["source"] == "counter" and parts["dram"]["source"] == "counter"
    assert parts["cpu"]["energy_joules"] == pytest.approx(400.0)  # both packages, exactly
    assert parts["dram"]["energy_joules"] == pytest.approx(40.0)
    assert parts["gpu"] == {
        "energy_joules": data["energy_joules"],  # the GPU keys keep their meaning
        "source": "counter",
        "mean_power_watts": data["mean_power_watts"],
        "carbon_grams_operational": data["carbon_grams_operational"],
        "cost_energy": data["cost"]["energy"],
    }
    total = data["energy_joules"] + 440.0
    assert data["total_energy_joules"] == pytest.approx(total, abs=1e-3)
    assert data["carbon_grams_operational_total"] == pytest.approx(
        total / KWH * 1.2 * 217.4, rel=1e-3
    )
    cpu_grams = 400 / KWH * 1.2 * 217.4
    assert parts["cpu"]["carbon_grams_operational"] == pytest.approx(cpu_grams, abs=1e-4)
    assert data["cost"]["host_energy"] == pytest.approx(440 / KWH * 1.2 * 0.30, abs=1e-6)
    assert data["zone"] == "GB"
    assert "CPU        400.0 J" in stderr and "total" in stderr

    with open(emissions, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    assert header == list(codecarbon.COLUMNS)  # header once, CodeCarbon's and nothing more
    assert len(rows) == 2 and rows[0]["run_id"] != rows[1]["run_id"]
    row = rows[1]
    assert uuid.UUID(row["run_id"]) and row["project_name"] == "llm"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["timestamp"])
    duration = float(row["duration"])
    assert duration == pytest.approx(data["duration_seconds"])
    # kWh, with the PUE (1.2) in them as CodeCarbon's tracker applies it
    assert float(row["cpu_energy"]) == pytest.approx(400 * 1.2 / KWH)
    assert float(row["ram_energy"]) == pytest.approx(40 * 1.2 / KWH)
    assert float(row["gpu_energy"]) == pytest.approx(data["energy_joules"] * 1.2 / KWH, rel=1e-6)
    assert float(row["energy_consumed"]) == pytest.approx(total * 1.2 / KWH, rel=1e-6)
    kg = data["carbon_grams_operational_total"] / 1000
    assert float(row["emissions"]) == pytest.approx(kg)  # kg
    assert float(row["emissions_rate"]) == pytest.approx(kg / duration)  # kg/s
    assert float(row["cpu_power"]) == pytest.approx(400 * 1.2 / duration, rel=1e-3)  # W
    assert float(row["ram_power"]) == pytest.approx(40 * 1.2 / duration, rel=1e-3)
    assert (row["country_iso_code"], row["country_name"]) == ("GBR", "United Kingdom")
    assert row["on_cloud"] == "N"
    assert float(row["pue"]) == 1.2 and row["tracking_mode"] == "machine"
    assert row["gpu_count"] == "1" and row["gpu_model"] == "1 x NVIDIA H100 80GB HBM3 (replayed)"
    # what CodeCarbon has no column for is in the JSON
    assert (data["parts"]["cpu"]["source"], data["exit_code"]) == ("counter", 0)

    md = table.read_text()
    assert "| part | energy | source | mean power | carbon (operational) | energy cost |" in md
    assert "| CPU (package) | 0.000111 kWh (400 J) | counter |" in md
    assert "| DRAM | 0.000011 kWh (40 J) | counter |" in md
    assert "| GPU x 1 (replayed) |" in md and "**total**" in md


def test_without_rapl_cpu_and_dram_are_unavailable_never_zero(tmp_path: Path) -> None:
    emissions = tmp_path / "emissions.csv"
    table = tmp_path / "energy.md"
    code, stderr, data = run_measure(
        tmp_path, tmp_path / "absent", "--csv", str(emissions), "--markdown", str(table)
    )
    assert code == 0, stderr
    for part in ("cpu", "dram"):
        assert data["parts"][part] == {
            "energy_joules": None,
            "source": "unavailable",
            "mean_power_watts": None,
            "carbon_grams_operational": None,
            "cost_energy": None,
        }
    assert data["total_energy_joules"] == pytest.approx(data["energy_joules"], abs=1e-3)
    with open(emissions, newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["cpu_energy"] == row["ram_energy"] == row["cpu_power"] == ""  # not "0"
    assert float(row["energy_consumed"]) == pytest.approx(float(row["gpu_energy"]))
    assert "| CPU (package) | - | unavailable |" in table.read_text()
    assert "CPU        unavailable" in stderr
    # the host's carbon and cost are not measured either: said so, never 0.00 g or 0.0000
    assert data["cost"]["host_energy"] is None
    (carbon,) = [line for line in stderr.splitlines() if line.startswith("  carbon ")]
    assert "g CPU" not in carbon and carbon.endswith("; CPU and DRAM: not measured (no RAPL)")
    (cost,) = [line for line in stderr.splitlines() if line.startswith("  cost ")]
    assert cost.endswith(", host energy not measured)")


def measure_sim(host: HostSettings, command: list[str]) -> dict:
    backend = SimBackend(Scenario.model_validate({"gpus": [{"model": "l4"}]}))
    settings = CollectSettings(interval_seconds=0.2, device_timeout_seconds=0.5, host=host)
    chain = CarbonChain([], "world")
    return asyncio.run(measure(command, backend, "test", settings, chain, 1.0)).as_json()


def test_root_only_rapl_is_unavailable_and_the_estimate_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakePowercap(tmp_path, INTEL_2S)

    def root_only(path: Path) -> int:  # CI runs as root: the error comes from the one reader
        raise PermissionError(13, "Permission denied", str(path / "energy_uj"))

    monkeypatch.setattr(rapl, "read_energy_uj", root_only)
    burn = [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1: pass"]
    data = measure_sim(HostSettings(powercap_root=tmp_path), burn)
    assert data["parts"]["cpu"]["source"] == "unavailable"
    assert data["parts"]["cpu"]["energy_joules"] is None
    estimated = measure_sim(
        HostSettings(powercap_root=tmp_path, estimate=True, cpu_tdp_watts=200.0), burn
    )
    cpu = estimated["parts"]["cpu"]
    assert cpu["source"] == "estimate"
    # CodeCarbon's model, over the collections around the run: from the one before the
    # command starts to the one after it ends (a 0.2 s interval; 0.5 s of slack for load)
    assert 0 < cpu["energy_joules"] <= 200.0 * (estimated["duration_seconds"] + 0.5)
    dram = estimated["parts"]["dram"]  # CodeCarbon's memory model: a constant power
    watts = ram_watts(psutil.virtual_memory().total / 2**30)
    assert dram["source"] == "estimate" and dram["mean_power_watts"] > 0
    assert 0 < dram["energy_joules"] <= watts * (estimated["duration_seconds"] + 0.5)


def test_a_csv_with_a_foreign_header_is_refused_before_the_run(tmp_path: Path) -> None:
    emissions = tmp_path / "emissions.csv"
    emissions.write_text("a,b,c\n1,2,3\n")
    marker = tmp_path / "ran"
    result = cli(
        "measure",
        "--backend",
        "sim",
        "--csv",
        str(emissions),
        "--",
        sys.executable,
        "-c",
        f"open({str(marker)!r}, 'w')",
    )
    assert result.returncode == 2 and "header" in result.stderr
    assert not marker.exists()


def test_the_ci_workflow_example_uses_real_flags_and_keys() -> None:
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "github-actions-measure.yml").read_text())
    assert "pull_request" in workflow[True]  # YAML reads the key `on` as true
    assert workflow["permissions"]["pull-requests"] == "write"
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    (run,) = [s for s in steps if "greenops-exporter measure" in s.get("run", "")]
    words = shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "x", run["run"]))
    assert words[:2] == ["greenops-exporter", "measure"]
    args = build_parser().parse_args(words[1:])
    assert args.cmd[0] == "--" and len(args.cmd) > 1  # a command to run
    assert args.csv and args.markdown and args.json and args.backend == "nvml"
    config = load_config(None, environ=run["env"])  # every GREENOPS_ key is a real one
    assert config.carbon.zone == "gcp:europe-west4" and config.carbon.pue == 1.1
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert set(upload["with"]["path"].split()) == {str(args.csv), str(args.json)}
    (comment,) = [s for s in steps if "gh pr comment" in s.get("run", "")]
    assert f"--body-file {args.markdown}" in comment["run"]


def test_mean_power_is_per_gpu_and_for_all_of_them() -> None:
    """Two H100s, one in the recorded matmul phase (697.6 W), one idle with a context
    (120 W): `mean_power_watts` is per GPU, the GPUs together draw their sum."""
    spec = {
        "gpus": [
            {"model": "h100-sxm", "schedule": [{"phase": "compute", "seconds": 600}]},
            {"model": "h100-sxm", "schedule": [{"phase": "idle_context", "seconds": 600}]},
        ]
    }
    backend = SimBackend(Scenario.model_validate(spec))
    settings = CollectSettings(interval_seconds=0.2, device_timeout_seconds=0.5)
    sleep = [sys.executable, "-c", "import time; time.sleep(1)"]
    run = asyncio.run(measure(sleep, backend, "test", settings, CarbonChain([], "world"), 1.0))
    data = run.as_json()
    # the sim's power carries at most 1 % noise around each phase's recorded mean
    assert data["mean_power_watts_all_gpus"] == pytest.approx(697.6 + 120.0, rel=0.01)
    assert data["mean_power_watts"] == pytest.approx((697.6 + 120.0) / 2, rel=0.01)
    assert data["parts"]["gpu"]["mean_power_watts"] == data["mean_power_watts"]
    assert codecarbon.csv_row(data, "p")["gpu_power"] == repr(data["mean_power_watts_all_gpus"])
    assert f"{data['mean_power_watts_all_gpus']:.1f} W in all" in codecarbon.markdown(data)


def test_the_report_says_per_gpu_and_echoes_the_command_quoted() -> None:
    result = cli(
        "measure", "--backend", "sim", "--collect-interval", "0.2", "--", "sh", "-c", "exit 7"
    )
    assert result.returncode == 7, result.stderr
    assert "greenops measure: sh -c 'exit 7' (exit 7)" in result.stderr
    [gpu] = [line for line in result.stderr.splitlines() if line.startswith("  GPU ")]
    per_gpu, all_gpus = (float(x) for x in re.findall(r"([\d.]+) W", gpu))
    assert "W per GPU" in gpu and "W for all 4" in gpu  # the demo scenario's four GPUs
    # each printed to 0.1 W: 4 x (±0.05) + 0.05 of rounding at most
    assert all_gpus == pytest.approx(4 * per_gpu, abs=0.25)


@pytest.mark.parametrize(("kind", "code"), [("missing", 127), ("not-executable", 126)])
def test_a_command_that_cannot_run_exits_as_a_shell_would(
    tmp_path: Path, kind: str, code: int
) -> None:
    program = tmp_path / "job.sh"
    if kind == "not-executable":
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o644)
    result = cli("measure", "--backend", "sim", "--", str(program), "--flag")
    assert result.returncode == code, result.stderr
    assert f"cannot run {program} --flag:" in result.stderr
