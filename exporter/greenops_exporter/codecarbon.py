"""`measure`'s files for CI: CodeCarbon's emissions.csv row and a pull-request table.

Both are made from the `measure --json` contract.

Columns are CodeCarbon's, in its order and units (duration s, emissions kg CO2e,
emissions_rate kg/s, powers W, energies kWh), so scripts and dashboards built for its file
read this one; columns with no equivalent here are left empty, and this exporter's own
columns follow at the end. A part that was not measured (`unavailable`) has an empty cell,
never a 0 that would read as measured.
"""

from __future__ import annotations

import csv
import os
import platform
import shlex
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

CODECARBON_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "on_cloud",
    "pue",
)
# this exporter's own, after CodeCarbon's
EXTRA_COLUMNS = (
    "cpu_energy_source",
    "gpu_energy_source",
    "ram_energy_source",
    "emissions_embodied",
    "intensity_grams_per_kwh",
    "intensity_source",
    "cost",
    "currency",
    "exit_code",
    "command",
)
COLUMNS = CODECARBON_COLUMNS + EXTRA_COLUMNS
PARTS = (("gpu", "GPU"), ("cpu", "CPU (package)"), ("dram", "DRAM"))
CSV_PART = {"gpu": "gpu", "cpu": "cpu", "dram": "ram"}
# the static table's country keys, as CodeCarbon writes countries (ISO 3166 alpha-3)
ALPHA3 = {
    "IE": "IRL",
    "GB": "GBR",
    "FR": "FRA",
    "DE": "DEU",
    "SE": "SWE",
    "NL": "NLD",
    "IT": "ITA",
    "JP": "JPN",
    "SG": "SGP",
}
KWH = 3.6e6


class CsvHeaderMismatch(ValueError):
    """An existing file whose header is not ours: appending would misalign every column."""


def check_csv(path: Path) -> None:
    """Refuse, before the command runs, a file whose header a row of ours would not match."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != COLUMNS:
        raise CsvHeaderMismatch(
            f"--csv {path}: its header is not this exporter's CodeCarbon-format header "
            "(write to a new file)"
        )


def _where(zone: str) -> dict[str, str]:
    provider, _, region = zone.partition(":")
    if region and provider in ("gcp", "aws", "azure"):
        return {"cloud_provider": provider, "cloud_region": region, "on_cloud": "Y"}
    return {"country_iso_code": ALPHA3.get(zone, ""), "on_cloud": "N"}


def _num(value: float | None, scale: float = 1.0) -> str:
    return "" if value is None else repr(value * scale)


def csv_row(
    data: Mapping[str, Any],
    project_name: str = "greenops",
    run_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """One CodeCarbon-format row from a `measure --json` result."""
    parts = data["parts"]
    seconds = data["duration_seconds"]
    emissions_kg = data["carbon_grams_operational_total"] / 1000
    row = dict.fromkeys(COLUMNS, "")
    row |= {
        "timestamp": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S"),
        "project_name": project_name,
        "run_id": run_id or str(uuid.uuid4()),
        "duration": repr(seconds),
        "emissions": repr(emissions_kg),
        "emissions_rate": repr(emissions_kg / seconds) if seconds > 0 else "",
        "energy_consumed": repr(data["total_energy_joules"] / KWH),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "cpu_count": str(os.cpu_count() or ""),
        "cpu_model": _cpu_model(),
        "gpu_count": str(len(data["gpus"])),
        "ram_total_size": repr(round(psutil.virtual_memory().total / 2**30, 3)),
        "tracking_mode": "machine",
        "pue": repr(data["pue"]),
        "emissions_embodied": repr(data["carbon_grams_embodied"] / 1000),
        "intensity_grams_per_kwh": repr(data["intensity_grams_per_kwh"]),
        "intensity_source": data["intensity_source"],
        "cost": repr(  # of what was measured: host_energy is null where CPU and DRAM were not
            data["cost"]["energy"] + data["cost"]["rental"] + (data["cost"]["host_energy"] or 0.0)
        ),
        "currency": data["cost"]["currency"],
        "exit_code": str(data["exit_code"]),
        "command": shlex.join(data["command"]),
    }
    row |= _where(data.get("zone", ""))
    for part, column in CSV_PART.items():
        p = parts[part]
        # CodeCarbon's gpu_power is all the GPUs' together; our part's is per GPU
        watts = data.get("mean_power_watts_all_gpus") if part == "gpu" else p["mean_power_watts"]
        row[f"{column}_power"] = _num(None if p["mean_power_watts"] is None else watts)
        row[f"{column}_energy"] = _num(p["energy_joules"], 1 / KWH)
        row[f"{column}_energy_source"] = p["source"]
    return row


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def append_csv(path: Path, row: Mapping[str, str]) -> None:
    """Append one row; the header only when the file is new or empty (as CodeCarbon does)."""
    check_csv(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _energy(joules: float | None) -> str:
    if joules is None:
        return "-"
    return f"{joules / KWH:.6f} kWh ({joules:,.0f} J)"


def _grams(grams: float | None) -> str:
    return "-" if grams is None else f"{grams:.2f} g"


def markdown(data: Mapping[str, Any]) -> str:
    """The table a CI job comments on a pull request."""
    cost = data["cost"]
    currency = cost["currency"]
    command = " ".join(shlex.join(data["command"]).split()).replace("`", "'")
    if len(command) > 80:
        command = command[:77] + "..."
    lines = [
        f"### Energy and carbon of `{command}`",
        "",
        "| part | energy | source | mean power | carbon (operational) | energy cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, title in PARTS:
        p = data["parts"][key]
        if key == "gpu":
            title = f"GPU x {len(data['gpus'])}"
        watts = "-" if p["mean_power_watts"] is None else f"{p['mean_power_watts']:.1f} W"
        if key == "gpu" and p["mean_power_watts"] is not None and len(data["gpus"]) > 1:
            watts += f" each, {data['mean_power_watts_all_gpus']:.1f} W in all"
        price = "-" if p["cost_energy"] is None else f"{p['cost_energy']:.4f} {currency}"
        lines.append(
            f"| {title} | {_energy(p['energy_joules'])} | {p['source']} | {watts} "
            f"| {_grams(p['carbon_grams_operational'])} | {price} |"
        )
    lines += [
        f"| **total** | **{_energy(data['total_energy_joules'])}** | | "
        f"| **{_grams(data['carbon_grams_operational_total'])}** | |",
        "",
        f"Duration {data['duration_seconds']:.1f} s, exit code {data['exit_code']}"
        + (f", interrupted by {data['interrupted']}. " if data.get("interrupted") else ". ")
        + f"Grid {data['intensity_grams_per_kwh']:.0f} gCO2e/kWh ({data['intensity_source']}), "
        f"PUE {data['pue']:g}. GPU embodied carbon {data['carbon_grams_embodied']:.2f} g; "
        f"GPU rental {cost['rental']:.4f} {currency}. "
        "A part marked `unavailable` was not measured and is not counted in the total.",
        "",
    ]
    return "\n".join(lines)
