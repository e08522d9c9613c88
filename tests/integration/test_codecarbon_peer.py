"""`measure --csv` against the real CodeCarbon 3.3.2 (the test extra pins it): its own
offline tracker appends to our emissions.csv and we to its, with no backup and one header;
its own dashboard's data reader loads both rows for the zones the README uses; and the
columns are its EmissionsData's, read from the installed package, not from its docs."""

from __future__ import annotations

import csv
import dataclasses
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from greenops_exporter.commands import codecarbon
from greenops_exporter.commands.codecarbon_zones import CLOUD, COUNTRIES, where
from greenops_exporter.sources.carbon_static import STATIC
from helpers import cli

cc_version = pytest.importorskip("codecarbon._version").__version__
from codecarbon.output_methods.emissions_data import EmissionsData  # noqa: E402

CODECARBON_DATA = Path(sys.modules["codecarbon._version"].__file__ or "").parent / "data"
# the zones the README's examples use, and the example CI workflow's
README_ZONES = ["GB", "world", "aws:us-east-1", "gcp:europe-north1", "gcp:europe-west4"]

# CodeCarbon's own tracker, offline (no network), writing to the same file
TRACKER = """
import sys, time
from codecarbon import OfflineEmissionsTracker
directory, name, iso, provider, region = sys.argv[1:6]
cloud = {"cloud_provider": provider, "cloud_region": region} if provider else {}
tracker = OfflineEmissionsTracker(
    country_iso_code=iso, output_dir=directory, output_file=name, measure_power_secs=1,
    save_to_file=True, project_name="codecarbon", allow_multiple_runs=True,
    log_level="error", **cloud,
)
tracker.start()
time.sleep(0.5)
tracker.stop()
"""


def codecarbon_run(path: Path, zone: str) -> None:
    cells = where(zone)
    argv = [str(path.parent), path.name, cells["country_iso_code"]]
    argv += [cells["cloud_provider"], cells["cloud_region"]]
    result = subprocess.run(
        [sys.executable, "-c", TRACKER, *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "backing up" not in result.stderr, result.stderr


def measure_run(tmp_path: Path, path: Path, zone: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / f"{zone.replace(':', '_')}.yaml"
    config.write_text(f"carbon: {{zone: '{zone}', pue: 1.2}}\n")
    return cli(
        "measure",
        "--config",
        str(config),
        "--backend",
        "sim",
        "--collect-interval",
        "0.2",
        "--csv",
        str(path),
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(0.3)",
    )


def test_our_columns_are_codecarbons_emissions_data_in_its_order() -> None:
    assert cc_version == codecarbon.CODECARBON_VERSION == "3.3.2"
    fields = [f.name for f in dataclasses.fields(EmissionsData)]
    assert list(codecarbon.COLUMNS) == fields


def test_every_zone_of_the_table_has_codecarbons_place() -> None:
    """Every zone has a country (CodeCarbon's reader needs one); Google's regions are
    CodeCarbon's own cloud table's rows; country names are its energy mix's."""
    assert set(STATIC) <= set(CLOUD) | set(COUNTRIES)
    mix = pd.read_json(CODECARBON_DATA / "private_infra" / "global_energy_mix.json")
    impact = pd.read_csv(CODECARBON_DATA / "cloud" / "impact.csv", keep_default_na=False)
    impact.columns = [c.lstrip("\ufeff") for c in impact.columns]
    checked = 0
    for zone in STATIC:
        cells = where(zone)
        assert cells["country_iso_code"] and cells["country_name"], zone
        provider, _, region = zone.partition(":")
        rows = impact[(impact.provider == provider) & (impact.region == region)]
        if len(rows):
            (row,) = rows.to_dict("records")
            assert cells["country_iso_code"] == row["countryIsoCode"], zone
            assert cells["country_name"] == row["country_name"], zone
            assert cells["region"] == (row["state"] or row["city"]), zone
            checked += 1
        elif zone != "world":
            name = mix[cells["country_iso_code"]]["country_name"]
            assert cells["country_name"] == name, zone
    assert checked == 21  # all Google regions but europe-north2, which impact.csv lacks


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("zone", ["GB", "gcp:europe-west4"])
def test_codecarbons_tracker_appends_to_our_file_with_no_backup(
    tmp_path: Path, zone: str
) -> None:
    path = tmp_path / "emissions.csv"
    result = measure_run(tmp_path, path, zone)
    assert result.returncode == 0, result.stderr
    codecarbon_run(path, zone)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".yaml") == [path.name]
    header, rows = _rows(path)
    assert header == list(codecarbon.COLUMNS) and len(rows) == 2
    ours, theirs = rows
    assert theirs["project_name"] == "codecarbon" and theirs["codecarbon_version"] == "3.3.2"
    for key in ("country_iso_code", "country_name", "on_cloud", "cloud_provider"):
        assert ours[key] == theirs[key], key  # the same place for the same zone
    # CodeCarbon's region is its table's state, and empty (a pandas NaN it takes for a
    # state) where the table has only a city; ours is the city there
    assert ours["region"] == (theirs["region"] or where(zone)["region"])
    assert ours["gpu_model"] == "2 x NVIDIA H100 80GB HBM3 (simulated)" + (
        "1 x NVIDIA A100-SXM4-80GB (simulated)1 x NVIDIA L4 (simulated)"
    )
    # both timestamps local time without offset, as CodeCarbon writes them
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["timestamp"])
    stamp = datetime.strptime(ours["timestamp"], "%Y-%m-%dT%H:%M:%S")
    assert abs((datetime.now() - stamp).total_seconds()) < 600  # local, not UTC


def test_measure_appends_to_codecarbons_file(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    codecarbon_run(path, "GB")
    before = path.read_text()
    result = measure_run(tmp_path, path, "GB")
    assert result.returncode == 0, result.stderr
    assert path.read_text().startswith(before)  # appended, nothing rewritten
    header, rows = _rows(path)
    assert header == list(codecarbon.COLUMNS) and len(rows) == 2
    assert rows[1]["project_name"] == "greenops" and float(rows[1]["pue"]) == 1.2


def _load_in_codecarbons_dashboard(path: Path, zone: str) -> None:
    """What CodeCarbon's carbonboard does with the file: read it with pandas, then its
    Data class's per-project summary and each comparison its callbacks draw."""
    from codecarbon.viz.data import Data

    df = pd.read_csv(path)
    data = Data()
    regional: dict[str, str] = {}
    for project in ("greenops", "codecarbon"):
        table = data.get_project_data(df, project)
        summary = data.get_project_summary(table.data)
        energy = summary["total"]["energy_consumed"]
        assert energy > 0, (project, zone)
        iso = summary["country_iso_code"]
        assert isinstance(iso, str) and iso == where(zone)["country_iso_code"]
        try:  # drawn for USA and CAN only: .upper() on a NaN was the crash
            data.get_regional_emissions_choropleth_data(energy, iso)
            regional[project] = "drawn"
        except KeyError as exc:  # CodeCarbon 3.3.2's own bug for USA, its rows' too
            regional[project] = f"KeyError {exc}"
        assert data.get_global_emissions_choropleth_data(energy)
        if zone.startswith("gcp:"):  # CodeCarbon's cloud table holds Google's regions only
            provider, region = summary["cloud_provider"], summary["cloud_region"]
            name, chart = data.get_cloud_emissions_barchart_data(
                energy, summary["on_cloud"], provider, region
            )
            assert name == "Google Cloud Platform" and len(chart)
    assert regional["greenops"] == regional["codecarbon"]  # ours loads as CodeCarbon's does
    assert regional["greenops"] == ("KeyError 'regionCode'" if iso == "USA" else "drawn")


@pytest.mark.filterwarnings("ignore:\\s*The dash_table.DataTable:DeprecationWarning")
@pytest.mark.parametrize("zone", README_ZONES)
def test_codecarbons_dashboard_reader_loads_both_rows(tmp_path: Path, zone: str) -> None:
    pytest.importorskip("dash")
    path = tmp_path / "emissions.csv"
    result = measure_run(tmp_path, path, zone)
    assert result.returncode == 0, result.stderr
    codecarbon_run(path, zone)
    _load_in_codecarbons_dashboard(path, zone)


def test_a_file_with_another_header_is_refused_naming_the_first_other_column(
    tmp_path: Path,
) -> None:
    """The header of this exporter's earlier CSV (CodeCarbon 2.x's 31 columns and its own 10)
    and a CodeCarbon 3.3.2 header in another order, which CodeCarbon accepts as we do."""
    old = tmp_path / "old.csv"
    old.write_text("timestamp,project_name,run_id,duration,emissions\n")
    marker = tmp_path / "ran"
    result = cli(
        "measure", "--backend", "sim", "--csv", str(old), "--",
        sys.executable, "-c", f"open({str(marker)!r}, 'w')",
    )  # fmt: skip
    assert result.returncode == 2 and not marker.exists()
    assert "column 4 is 'duration' where 'experiment_id' is expected" in result.stderr
    shuffled = tmp_path / "shuffled.csv"
    columns = list(reversed(codecarbon.COLUMNS))
    shuffled.write_text(",".join(columns) + "\n")
    result = measure_run(tmp_path, shuffled, "GB")
    assert result.returncode == 0, result.stderr
    header, (row,) = _rows(shuffled)
    assert header == columns and row["country_iso_code"] == "GBR" and row["pue"] == "1.2"
