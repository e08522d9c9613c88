"""The report for a terminal (aligned tables) or a pull request and chat (Markdown tables):
one layout, two table styles."""

from __future__ import annotations

from collections.abc import Sequence

from greenops_exporter.commands.report.model import Report

Row = Sequence[str]


def money(x: float) -> str:
    return f"{x:,.2f}"


def num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def kg(grams: float | None) -> str:
    return "-" if grams is None else f"{grams / 1000:,.1f}"


def table(headers: Row, rows: Sequence[Row], markdown: bool) -> list[str]:
    """Text: columns padded, numbers right-aligned; Markdown: a pipe table."""
    if markdown:
        right = [i > 0 for i in range(len(headers))]
        out = ["| " + " | ".join(headers) + " |"]
        out.append("| " + " | ".join("---:" if r else "---" for r in right) + " |")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return out
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(row: Row) -> str:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def check_line(r: Report) -> str:
    """To a hundredth of a cent, so that the parts visibly add up to the fleet's cost."""
    k, c = r.check, r.currency

    def m(x: float) -> str:
        return f"{x:,.4f}"

    verdict = "reconciles" if k.ok else f"DOES NOT reconcile: {m(k.difference)} not attributed"
    return (
        f"check: groups {m(k.groups_cost)} + outside pods {m(k.outside_pods_cost)} + unheld "
        f"{m(k.unheld_cost)} = {m(k.parts_cost)} {c}; fleet GPU cost {m(k.fleet_cost)} {c}: "
        f"{verdict}"
    )


def render(r: Report, markdown: bool = False) -> str:
    c = r.currency
    h = "## " if markdown else ""
    f = r.fleet
    out = [
        f"{'# ' if markdown else ''}GPU FinOps report, {r.start} to {r.end}",
        "",
        f"{f.gpus} GPUs, {num(f.gpu_hours, 0)} GPU-hours; cost {money(f.cost)} {c} "
        f"(energy {money(f.energy_cost)}, rental {money(f.rental_cost)}); "
        f"{num(f.energy_kwh)} kWh; carbon {kg(f.carbon_operational_g)} kg operational + "
        f"{kg(f.carbon_embodied_g)} kg embodied",
        "",
        f"{h}By {r.by}",
        "",
    ]
    headers = [
        r.by,
        f"cost {c}",
        "energy",
        "rental",
        "idle held",
        "overhead",
        "kWh",
        "GPU-h",
        "idle GPU-h",
        "stranded GiB-h",
        "kg CO2e op",
        "kg emb",
        "share",
    ]
    rows = [
        [
            g.name,
            money(g.cost),
            money(g.energy_cost),
            money(g.rental_cost),
            money(g.idle_cost),
            money(g.overhead_cost),
            num(g.energy_kwh),
            num(g.gpu_hours),
            num(g.idle_gpu_hours),
            num(g.stranded_gib_hours),
            kg(g.carbon_operational_g),
            kg(g.carbon_embodied_g),
            f"{g.cost_share:.1%}",
        ]
        for g in r.groups
    ]
    blank = [""] * 10
    rows.append(
        [
            "processes outside pods",
            money(f.outside_pods_cost),
            *blank[:4],
            "",
            num(f.outside_pods_gpu_hours),
            *blank[:5],
        ]
    )
    rows.append(
        [
            "unheld (no process)",
            money(f.unheld_cost),
            *blank[:4],
            num(f.unheld_idle_kwh),
            num(f.unheld_gpu_hours),
            *blank[:5],
        ]
    )
    out += table(headers, rows, markdown)
    out += [
        "",
        check_line(r),
        "",
        f"{h}Waste",
        "",
        f"idle (held or not) {money(f.idle_cost)} {c}, overhead-bound {money(f.overhead_cost)} "
        f"{c}; unheld idle energy {num(f.unheld_idle_kwh)} kWh",
    ]
    if r.inference:
        out += ["", f"{h}Inference", ""]
        out += table(
            ["source/model", "requests", "tokens", "kWh", "J/request", "J/token"],
            [
                [
                    f"{i.source}/{i.model}",
                    num(i.requests, 0),
                    num(i.tokens, 0),
                    num(i.energy_kwh),
                    "-" if i.joules_per_request is None else num(i.joules_per_request, 2),
                    "-" if i.joules_per_token is None else num(i.joules_per_token, 4),
                ]
                for i in r.inference
            ],
            markdown,
        )
    out += ["", f"{h}What to change", ""]
    if not r.recommendations:
        out.append("nothing found to change in this period")
    for rec in r.recommendations:
        saving = []
        if rec.saving_cost is not None:
            saving.append(f"{money(rec.saving_cost)} {c}")
        if rec.saving_g is not None:
            saving.append(f"{kg(rec.saving_g)} kg CO2e")
        bullet = "- " if markdown else "* "
        saves = " and ".join(saving) or "nothing measured"
        out.append(
            f"{bullet}{rec.subject}: {rec.text}; saves {saves} (evidence: {rec.evidence_from} "
            f"to {rec.evidence_to}, {num(rec.evidence_hours, 0)} h)"
        )
    if r.notes:
        out += ["", f"{h}Notes", ""]
        out += [f"{'- ' if markdown else '* '}{n}" for n in r.notes]
    out += ["", f"{r.queries} queries; step {r.step_seconds} s, buckets of {r.bucket_seconds} s"]
    return "\n".join(out) + "\n"
