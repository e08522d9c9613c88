"""The report for machines: JSON (the documented contract) and CSV (one row per group and
one per unattributed part, stable columns, for finance tools)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from greenops_exporter.commands.report.model import Report

CSV_COLUMNS = (
    "start",
    "end",
    "by",
    "group",
    "gap",
    "currency",
    "cost",
    "energy_cost",
    "rental_cost",
    "idle_cost",
    "overhead_cost",
    "energy_kwh",
    "gpu_hours",
    "idle_gpu_hours",
    "stranded_gib_hours",
    "carbon_operational_g",
    "carbon_embodied_g",
    "greenest_saving_g",
    "cost_share",
)


def render_json(r: Report) -> str:
    return json.dumps(dataclasses.asdict(r), indent=2, allow_nan=False) + "\n"


def render_csv(r: Report) -> str:
    """Groups, then `processes outside pods` and `unheld` (gap column says so): the cost
    column adds up to the fleet's GPU cost."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    head = (r.start, r.end, r.by)
    for g in r.groups:
        w.writerow(
            (
                *head,
                g.name,
                g.gap or "",
                r.currency,
                *(
                    f"{x:.6f}"
                    for x in (
                        g.cost,
                        g.energy_cost,
                        g.rental_cost,
                        g.idle_cost,
                        g.overhead_cost,
                        g.energy_kwh,
                        g.gpu_hours,
                        g.idle_gpu_hours,
                        g.stranded_gib_hours,
                        g.carbon_operational_g,
                        g.carbon_embodied_g,
                    )
                ),
                "" if g.greenest_saving_g is None else f"{g.greenest_saving_g:.6f}",
                f"{g.cost_share:.6f}",
            )
        )
    f = r.fleet
    for name, cost, hours, kwh in (
        ("processes outside pods", f.outside_pods_cost, f.outside_pods_gpu_hours, None),
        ("unheld", f.unheld_cost, f.unheld_gpu_hours, f.unheld_idle_kwh),
    ):
        share = cost / f.cost if f.cost > 0 else 0.0
        cells = [""] * (len(CSV_COLUMNS) - 6)
        cells[0] = f"{cost:.6f}"  # cost
        cells[5] = "" if kwh is None else f"{kwh:.6f}"  # energy_kwh (idle, for unheld)
        cells[6] = f"{hours:.6f}"  # gpu_hours
        cells[-1] = f"{share:.6f}"
        w.writerow((*head, name, "not attributed to a group", r.currency, *cells))
    return buf.getvalue()
