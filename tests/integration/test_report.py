"""`report` against Debian's real Prometheus, on a TSDB backfilled by promtool from a
month of a simulated 4 x 8 GPU fleet written by the exporter's own encoder: every figure
against the totals the generator accrued.

Tolerance: the generator's samples lie on the step's boundaries and the report telescopes
each counter's last samples step by step (no extrapolation), so its sums are the counters'
exact changes; only the order of float additions differs (rel 1e-9)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from greenops_exporter.cli.main import main
from greenops_exporter.commands.report.render_data import CSV_COLUMNS
from reportfleet import ENERGY_PRICE, MIG_PROFILE, PUE, TEAMS, Truth
from reportprom import NEEDS_PROMETHEUS, PERIOD, REL, close, report_json

pytestmark = NEEDS_PROMETHEUS


def test_every_figure_is_what_the_fleet_accrued(
    fleet: tuple[str, Truth], by_namespace: dict[str, Any]
) -> None:
    _url, truth = fleet
    r = by_namespace
    t = truth.fleet
    f = r["fleet"]
    assert isinstance(f, dict)
    expected = {
        "cost": t["energy_cost"] + t["rental_cost"],
        "energy_cost": t["energy_cost"],
        "rental_cost": t["rental_cost"],
        "pods_cost": t["holder_cost_pod"],
        "outside_pods_cost": t["holder_cost_process"],
        "unheld_cost": t["holder_cost_none"],
        "idle_cost": t["waste_idle"],
        "overhead_cost": t["waste_overhead"],
        "energy_kwh": t["energy"] / 3.6e6,
        "unheld_idle_kwh": t["idle_energy_none"] / 3.6e6,
        "gpu_hours": 32 * 720.0,
        "pods_gpu_hours": t["holder_seconds_pod"] / 3600,
        "outside_pods_gpu_hours": 720.0,
        "unheld_gpu_hours": t["holder_seconds_none"] / 3600,
        "carbon_operational_g": t["operational"],
        "carbon_embodied_g": t["embodied"],
        "gpus": 32,
    }
    assert {k: f[k] for k in expected} == pytest.approx(expected, rel=REL)
    assert f["rental_cost"] == pytest.approx(32 * 720 * 2.5, rel=REL)  # from the prices alone
    groups = {g["name"]: g for g in r["groups"]}
    assert set(groups) == set(truth.by_namespace)
    for name, g in groups.items():
        n = truth.by_namespace[name]
        energy_cost = n["energy"] / 3.6e6 * PUE * ENERGY_PRICE
        want = {
            "cost": n["cost"],
            "energy_cost": energy_cost,
            "rental_cost": n["cost"] - energy_cost,
            "idle_cost": n["waste_idle"],
            "overhead_cost": n["waste_overhead"],
            "energy_kwh": n["energy"] / 3.6e6,
            "gpu_hours": n["gpu_seconds"] / 3600,
            "idle_gpu_hours": n["idle_seconds"] / 3600,
            "stranded_gib_hours": n["stranded_byte_seconds"] / 2**30 / 3600,
            "carbon_operational_g": n["operational"],
            "carbon_embodied_g": n["embodied"],
            "greenest_saving_g": n["greenest_saving"],
            "cost_share": n["cost"] / expected["cost"],
        }
        assert {k: g[k] for k in want} == pytest.approx(want, rel=REL, abs=1e-9), name
        assert g["gap"] is None
    assert groups["notebooks"]["stranded_gib_hours"] > 0  # the fleet's one stranding namespace
    check = r["check"]
    assert isinstance(check, dict)
    assert check["ok"] is True and abs(check["difference"]) < 1e-6
    assert close(check["fleet_cost"], expected["cost"])
    assert close(check["groups_cost"], t["holder_cost_pod"])
    # the three parts come from different series: each was checked against the truth above
    parts = sum(g["cost"] for g in groups.values()) + f["outside_pods_cost"] + f["unheld_cost"]
    assert abs(parts - f["cost"]) < 0.005
    [inference] = r["inference"]
    assert close(inference["joules_per_request"], t["inference_energy"] / t["inference_requests"])
    assert close(inference["joules_per_token"], t["inference_energy"] / t["inference_tokens"])
    days = r["trend"]
    assert isinstance(days, list) and len(days) == 30
    assert [d["cost"] for d in days] == pytest.approx(
        [truth.daily_cost[i] for i in range(30)], rel=REL
    )
    notes = " ".join(r["notes"])
    # node-2's exporter restarted: its 8 GPUs' two cost series counted again from 0
    assert "16 cost counter series restarted from 0" in notes


def test_the_recommendations_and_their_evidence(
    fleet: tuple[str, Truth], by_namespace: dict[str, Any]
) -> None:
    _url, truth = fleet
    r = by_namespace
    recs = r["recommendations"]
    assert isinstance(recs, list)
    [mig] = [x for x in recs if x["kind"] == "mig_rightsize"]
    assert "node-0 GPU 6" in mig["subject"] and MIG_PROFILE in mig["text"]
    assert close(mig["saving_cost"], truth.fleet["mig_cost"])
    assert close(mig["saving_g"], truth.fleet["mig_grams"])
    assert mig["evidence_hours"] == 720.0
    [green] = [x for x in recs if x["kind"] == "greenest_window"]
    greenest = sum(n["greenest_saving"] for n in truth.by_namespace.values())
    assert close(green["saving_g"], greenest)
    assert green["evidence_hours"] == 361.0  # forecasts from the 15th day's start to the end
    assert green["evidence_from"] == "2026-09-15T00:00:00Z"
    idle = [x for x in recs if x["kind"] == "idle_while_held"]
    over = {
        pod: sorted(day for day, s in days.items() if s > 4 * 3600)
        for pod, days in truth.idle_by_pod_day.items()
    }
    over = {pod: days for pod, days in over.items() if days}
    assert len(idle) == 11 and idle[-1]["subject"] == f"{len(over) - 10} more pods"
    for rec in idle[:10]:
        pod = tuple(rec["subject"].split(" on ")[0].split("/"))
        assert pod in over
        assert f"on {len(over[pod])} days" in rec["text"]
        assert close(rec["saving_cost"], truth.by_pod[pod]["waste_idle"])
        assert rec["evidence_hours"] == truth.by_pod[pod]["idle_seconds"] / 3600
    assert close(
        sum(x["saving_cost"] for x in idle), sum(truth.by_pod[p]["waste_idle"] for p in over)
    )


def test_the_query_count_does_not_grow_with_pods(
    fleet: tuple[str, Truth], by_namespace: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, truth = fleet
    by_pod, _ = report_json(url, capsys, "--by", "pod")
    assert len(by_pod["groups"]) == len(truth.by_pod) > 100
    assert by_namespace["queries"] == by_pod["queries"] == 28
    assert by_pod["check"]["ok"] is True


def test_teams_from_kube_namespace_labels_and_from_a_file(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, truth = fleet
    mapping = tmp_path / "teams.yaml"
    mapping.write_text("".join(f"{ns}: {team}\n" for ns, team in TEAMS.items()))
    for extra in ([], ["--team-map", str(mapping)]):
        r, _ = report_json(url, capsys, "--by", "team", *extra)
        groups = {g["name"]: g for g in r["groups"]}
        assert set(groups) == {"ml", "science", "(no team)"}
        for team in ("ml", "science"):
            members = [ns for ns, t in TEAMS.items() if t == team]
            assert close(groups[team]["cost"], sum(truth.by_namespace[n]["cost"] for n in members))
        # batch and platform have no team label: their own, marked row, never spread
        unmapped = [n for n in truth.by_namespace if n not in TEAMS]
        assert close(
            groups["(no team)"]["cost"], sum(truth.by_namespace[n]["cost"] for n in unmapped)
        )
        assert groups["(no team)"]["gap"] == "namespaces without a team"
        assert r["check"]["ok"] is True


def test_other_groupings_and_a_match_reconcile(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    url, truth = fleet
    r, _ = report_json(url, capsys, "--by", "gpu_model")
    models = {g["name"]: g for g in r["groups"]}
    assert set(models) == {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"}
    assert r["check"]["ok"] is True
    r, _ = report_json(url, capsys, "--by", "hostname", "--match", 'hostname="node-1"')
    assert [g["name"] for g in r["groups"]] == ["node-1"]
    assert r["fleet"]["rental_cost"] == pytest.approx(8 * 720 * 2.5, rel=REL)
    assert r["check"]["ok"] is True
    r, _ = report_json(url, capsys, "--by", "cluster")  # a label no series has
    [row] = r["groups"]
    assert row["name"] == "(no cluster)" and row["gap"] == "series without a cluster"
    assert any("(no cluster)" in n for n in r["notes"])
    assert close(row["cost"], truth.fleet["holder_cost_pod"])


def test_every_format(
    fleet: tuple[str, Truth], by_namespace: dict[str, Any], tmp_path: Path
) -> None:
    url, _truth = fleet
    fleet_cost = by_namespace["fleet"]["cost"]
    for fmt in ("text", "markdown", "csv"):
        out = tmp_path / f"report.{fmt}"
        assert (
            main(["report", "--prometheus", url, *PERIOD, "--format", fmt, "--out", str(out)]) == 0
        )
        text = out.read_text()
        if fmt != "csv":
            assert f"fleet GPU cost {fleet_cost:,.4f} USD: reconciles" in text
            assert ("| ml-train |" in text) == (fmt == "markdown")
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert tuple(rows[0].split(",")) == CSV_COLUMNS
    costs = [float(line.split(",")[CSV_COLUMNS.index("cost")]) for line in rows[1:]]
    assert len(costs) == 6 + 2  # six namespaces, outside pods, unheld
    assert abs(sum(costs) - fleet_cost) < 1e-4  # six decimals a row


def test_the_html_renders_its_charts_in_chromium(fleet: tuple[str, Truth], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    url, _truth = fleet
    page = tmp_path / "report.html"
    assert (
        main(["report", "--prometheus", url, *PERIOD, "--format", "html", "--out", str(page)]) == 0
    )
    text = page.read_text()
    assert text.count("<svg") == 3
    assert "src=" not in text and "<link" not in text  # nothing to fetch: readable offline
    png = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1300,1600",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from matplotlib.image import imread

    pixels = imread(png)[:, :, :3]
    # the charts' own colours reached the screen: the worked bars, idle bars, carbon bars
    for rgb in ((0x4C, 0x72, 0xB0), (0xC4, 0x4E, 0x52), (0x55, 0xA8, 0x68)):
        want = [c / 255 for c in rgb]
        hits = (abs(pixels - want).max(axis=2) < 0.02).sum()
        assert hits > 500, rgb


def test_a_period_without_data_says_so(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _truth = fleet
    code = main(["report", "--prometheus", url, "--from", "2020-01-01", "--to", "2020-01-31"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "no greenops cost series from 2020-01-01T00:00:00Z to 2020-01-31T00:00:00Z" in err
