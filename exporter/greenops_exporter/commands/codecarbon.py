"""`measure`'s files for CI: CodeCarbon's emissions.csv row and a pull-request table.

Both are made from the `measure --json` contract.

The CSV is CodeCarbon 3.3.2's (the version checked, `codecarbon==3.3.2` in the test extra):
its EmissionsData's 38 columns, names and order, with its meanings: energies (kWh) and
powers (W) include the PUE as its tracker applies it; emissions kg CO2e; the timestamp is
local time without offset; `gpu_model` is "4 x NVIDIA H100 80GB HBM3". CodeCarbon's tracker
appends to this file and this one to CodeCarbon's. What CodeCarbon has no column for
(energy sources, embodied carbon, cost, exit code, command) is in the JSON only. A part that
was not measured (`unavailable`) has an empty cell, never a 0 that would read as measured.
"""

from __future__ import annotations

import csv
import io
import platform
import shlex
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from greenops_exporter.commands.codecarbon_zones import where

CODECARBON_VERSION = "3.3.2"  # the release whose columns and meanings these are
# codecarbon/output_methods/emissions_data.py's EmissionsData, field by field
COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
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
    "water_consumed",
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
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)
PARTS = (("gpu", "GPU"), ("cpu", "CPU (package)"), ("dram", "DRAM"))
CSV_PART = {"gpu": "gpu", "cpu": "cpu", "dram": "ram"}
KWH = 3.6e6


class CsvHeaderMismatch(ValueError):
    """An existing file whose header is not CodeCarbon's: appending would misalign it."""


def read_header(path: Path) -> list[str] | None:
    """The file's header row; None for a file that is absent or empty (a new file)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def check_csv(path: Path) -> None:
    """Refuse, before the command runs, a file a row of ours cannot be appended to. Like
    CodeCarbon, any order of its columns is accepted (the row follows the file's order);
    another set of columns is refused, naming the first column that differs."""
    header = read_header(path)
    if header is None or sorted(header) == sorted(COLUMNS):
        return
    for i, expected in enumerate(COLUMNS):
        found = header[i] if i < len(header) else None
        if found != expected:
            got = "nothing" if found is None else repr(found)
            raise CsvHeaderMismatch(
                f"--csv {path}: its header is not CodeCarbon {CODECARBON_VERSION}'s: column "
                f"{i + 1} is {got} where {expected!r} is expected (write to a new file)"
            )
    extra = header[len(COLUMNS)]
    raise CsvHeaderMismatch(
        f"--csv {path}: its header is not CodeCarbon {CODECARBON_VERSION}'s: column "
        f"{len(COLUMNS) + 1} is {extra!r} where the header should end (write to a new file)"
    )


def _num(value: float | None, scale: float = 1.0) -> str:
    return "" if value is None else repr(value * scale)


def gpu_model(models: Sequence[str], kind: str = "") -> str:
    """CodeCarbon's form: "N x NAME" per model, joined as its resource tracker joins them
    (with nothing between); a simulated or replayed GPU says so after its name."""
    suffix = f" ({kind})" if kind else ""
    return "".join(f"{n} x {name}{suffix}" for name, n in Counter(models).items())


def csv_row(
    data: Mapping[str, Any],
    project_name: str = "greenops",
    run_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """One CodeCarbon-format row from a `measure --json` result."""
    parts = data["parts"]
    seconds = data["duration_seconds"]
    pue = data["pue"]
    emissions_kg = data["carbon_grams_operational_total"] / 1000  # PUE already in it
    usage = data.get("usage") or {}
    row = dict.fromkeys(COLUMNS, "")
    row |= {
        # CodeCarbon: datetime.now().strftime("%Y-%m-%dT%H:%M:%S"), local time, no offset
        "timestamp": (now or datetime.now()).strftime("%Y-%m-%dT%H:%M:%S"),
        "project_name": project_name,
        "run_id": run_id or str(uuid.uuid4()),
        "duration": repr(seconds),
        "emissions": repr(emissions_kg),
        "emissions_rate": repr(emissions_kg / seconds) if seconds > 0 else "0",
        "energy_consumed": repr(data["total_energy_joules"] * pue / KWH),
        "water_consumed": "0.0",  # CodeCarbon's default WUE of 0 L/kWh
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "cpu_count": str(psutil.cpu_count() or ""),
        "cpu_model": _cpu_model(),
        "gpu_count": str(len(data["gpus"])),
        "gpu_model": gpu_model(data.get("gpu_models", []), data.get("gpu_kind", "")),
        "ram_total_size": repr(psutil.virtual_memory().total / 2**30),
        "tracking_mode": "machine",
        "pue": repr(float(pue)),
        "wue": "0.0",
    }
    for key in (
        "cpu_utilization_percent",
        "gpu_utilization_percent",
        "ram_utilization_percent",
        "ram_used_gb",
    ):
        row[key] = _num(usage.get(key))
    row |= where(data.get("zone", ""))
    for part, column in CSV_PART.items():
        p = parts[part]
        # CodeCarbon's gpu_power is all the GPUs' together; our part's is per GPU
        watts = data.get("mean_power_watts_all_gpus") if part == "gpu" else p["mean_power_watts"]
        row[f"{column}_power"] = _num(None if p["mean_power_watts"] is None else watts, pue)
        row[f"{column}_energy"] = _num(p["energy_joules"], pue / KWH)
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
    """Append one row in the file's column order; the header only when the file is new or
    empty (as CodeCarbon does)."""
    check_csv(path)
    header = read_header(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or COLUMNS)
        if header is None:
            writer.writeheader()
        writer.writerow(row)


def csv_text(row: Mapping[str, str]) -> str:
    """The header and the row as text, for stdout when the file could not be written."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue()


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
    kind = data.get("gpu_kind", "")
    lines = [
        f"### Energy and carbon of `{command}`",
        "",
        *(
            [f"**The GPUs are {kind}** (backend `{data.get('backend')}`): not this machine's.", ""]
            if kind
            else []
        ),
        "| part | energy | source | mean power | carbon (operational) | energy cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, title in PARTS:
        p = data["parts"][key]
        if key == "gpu":
            title = f"GPU x {len(data['gpus'])}" + (f" ({kind})" if kind else "")
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
