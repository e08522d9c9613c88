"""`measure`'s text report and its files: what a run cost, part by part, said once on
stderr; the files checked before the command runs, and never lost after it."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenops_exporter.commands import codecarbon
from greenops_exporter.commands.measure import CAR_GRAMS_PER_KM, Measurement, Part
from greenops_exporter.config.errors import UsageError


def _part_line(name: str, part: Part, gpus: int = 1, all_gpus: float = 0.0) -> str:
    if part.energy_joules is None:
        return f"  {name:<10} unavailable (not measured, not counted)"
    watts = "" if part.mean_power_watts is None else f", mean {part.mean_power_watts:.1f} W"
    if watts and gpus > 1:
        watts += f" per GPU, {all_gpus:.1f} W for all {gpus}"
    return (
        f"  {name:<10} {part.energy_joules:.1f} J ({part.energy_joules / 3.6e6:.6f} kWh)"
        f"{watts} ({part.source})"
    )


def _not_measured(parts: Mapping[str, Part]) -> str:
    """`; CPU and DRAM: not measured (no RAPL)`, each reason once; "" when all were."""
    by_why: dict[str, list[str]] = {}
    for name, part in parts.items():
        by_why.setdefault(part.why or "not read", []).append(name)
    return "".join(
        f"; {' and '.join(names)}: not measured ({why})" for why, names in by_why.items()
    )


def report(m: Measurement) -> dict[str, Any]:
    """Print the text report (stderr: stdout is the command's); return the JSON data the
    files are made from."""
    data = m.as_json()
    mix = ", ".join(
        f"{c} {s:.0%}"
        for c, s in sorted(data["class_share"].items(), key=lambda kv: -kv[1])
        if s > 0
    )
    host_grams = m.host_sum("operational_grams")
    host_cost = m.host_sum("energy_cost")
    grams = m.operational_grams + m.embodied_grams + (host_grams or 0.0)
    counted = " + ".join(n.upper() for n, p in m.parts.items() if p.energy_joules is not None)
    host = {n.upper(): p for n, p in m.parts.items() if n != "gpu"}
    measured = " and ".join(n for n, p in host.items() if p.energy_joules is not None)
    missing = _not_measured({n: p for n, p in host.items() if p.energy_joules is None})
    host_carbon = "" if host_grams is None else f" + {host_grams:.2f} g {measured}"
    host_price = "not measured" if host_cost is None else f"{host_cost:.4f}"
    if host_cost is not None and missing:
        host_price += f" ({measured} only)"
    status = f"exit {m.exit_code}"
    if m.interrupted is not None:
        status += f"; interrupted by {m.interrupted}: measured until then"
    kind = f" {m.gpu_kind}" if m.gpu_kind else ""
    gpu_name = f"GPU ({m.gpu_kind})" if kind else "GPU"
    lines = [
        f"greenops measure: {shlex.join(m.command)} ({status})",
        f"  duration   {m.seconds:.1f} s on {len(m.gpus)}{kind} GPU(s)"
        + (f" (backend {m.backend}: not this machine's GPUs)" if kind else ""),
        *(
            _part_line(gpu_name, part, len(m.gpus), m.mean_power_all_gpus)
            if name == "gpu"
            else _part_line(name.upper(), part)
            for name, part in m.parts.items()
        ),
        f"  total      {data['total_energy_joules']:.1f} J "
        f"({data['total_energy_joules'] / 3.6e6:.6f} kWh): {counted or 'nothing measured'}",
        f"  class mix  {mix or '-'} (GPU)",
        f"  waste      {data['waste_energy_joules']:.1f} J idle or overhead (GPU)",
        f"  carbon     {m.operational_grams:.2f} g GPU{host_carbon} operational "
        f"({m.intensity:.0f} g/kWh from {m.intensity_source}, PUE {m.pue:g}) "
        f"+ {m.embodied_grams:.2f} g GPU embodied{missing}",
        f"  cost       {m.energy_cost + m.rental_cost + (host_cost or 0.0):.4f} {m.currency} "
        f"(GPU energy {m.energy_cost:.4f}, rental {m.rental_cost:.4f}, "
        f"host energy {host_price})",
        f"  that is    like driving {grams / CAR_GRAMS_PER_KM * 1000:.0f} m in an average car",
    ]
    print("\n".join(lines), file=sys.stderr)
    return data


def check_outputs(json_path: Path | None, csv_path: Path | None, md_path: Path | None) -> None:
    """Refuse, before the command runs, an output that cannot be written: a run whose
    report has nowhere to go would be lost, and with it the job's exit code."""
    for flag, path in (("--json", json_path), ("--csv", csv_path), ("--markdown", md_path)):
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a directory (give a file)")
        existed = path.exists()
        try:
            with open(path, "a"):  # opens as the write will, changes nothing in it
                pass
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
        if not existed:
            path.unlink(missing_ok=True)
    if csv_path is not None:
        try:
            codecarbon.check_csv(csv_path)
        except codecarbon.CsvHeaderMismatch as exc:
            raise UsageError(str(exc)) from None


def write_outputs(
    data: Mapping[str, Any],
    json_path: Path | None,
    csv_path: Path | None,
    md_path: Path | None,
    project_name: str,
) -> bool:
    """Write each file asked for; one that still fails (a full disk, a file made read-only
    during the run) is named on stderr and its content goes to stdout instead. False when
    one failed; the run's exit code stays the command's either way."""
    outputs: list[tuple[str, Path, str, Any]] = []
    if json_path is not None:
        text = json.dumps(data, indent=2) + "\n"
        outputs.append(("--json", json_path, text, lambda p, t=text: p.write_text(t)))
    if csv_path is not None:
        row = codecarbon.csv_row(data, project_name)
        outputs.append(
            ("--csv", csv_path, codecarbon.csv_text(row), lambda p: codecarbon.append_csv(p, row))
        )
    if md_path is not None:
        text = codecarbon.markdown(data)
        outputs.append(("--markdown", md_path, text, lambda p, t=text: p.write_text(t)))
    ok = True
    for flag, path, text, write in outputs:
        try:
            write(path)
        except (OSError, codecarbon.CsvHeaderMismatch) as exc:
            ok = False
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(
                f"greenops-exporter: measure: {flag} {path}: cannot write ({why}); "
                "it follows on stdout",
                file=sys.stderr,
            )
            sys.stdout.write(text)
            sys.stdout.flush()
    return ok
