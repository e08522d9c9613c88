"""The report as one self-contained HTML file: the tables, and charts (cost and waste by
group, the daily trend, carbon by scope) drawn by matplotlib as inline SVG, so it opens
offline, in a mail or an artifact store, with nothing to fetch."""

from __future__ import annotations

import html
import io
from typing import Any

from greenops_exporter.commands.report.model import Report
from greenops_exporter.commands.report.render_text import check_line, kg, money, num
from greenops_exporter.config.errors import UsageError

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.gap td { color: #8a5a00; font-style: italic; }
.check { padding: 6px 10px; border-radius: 4px; display: inline-block; }
.ok { background: #e6f4ea; } .bad { background: #fce8e6; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .charts figure { margin: 0; }
"""


def check_available() -> None:
    """Before any query: html needs the optional plotting extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            "--format html draws its charts with matplotlib: pip install "
            "'greenops-exporter[report]' (or use text, markdown, csv or json)"
        ) from exc


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or DOCTYPE


def charts(r: Report) -> list[tuple[str, str]]:
    from matplotlib.figure import Figure

    out = []
    names = [g.name for g in r.groups] + ["outside pods", "unheld"]
    idle = [g.idle_cost for g in r.groups] + [0.0, r.fleet.unheld_cost]
    overhead = [g.overhead_cost for g in r.groups] + [0.0, 0.0]
    used = [g.cost - g.idle_cost - g.overhead_cost for g in r.groups]
    used += [r.fleet.outside_pods_cost, 0.0]
    fig = Figure(figsize=(6.5, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    ax.barh(names, used, color="#4c72b0", label="worked")
    ax.barh(names, overhead, left=used, color="#dd8452", label="overhead-bound")
    left = [a + b for a, b in zip(used, overhead, strict=True)]
    ax.barh(names, idle, left=left, color="#c44e52", label="idle (held, or unheld)")
    ax.invert_yaxis()
    ax.set_xlabel(r.currency)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Cost and waste by {r.by}")
    out.append(("Cost and waste by group", _svg(fig)))

    days = [d.end[:10] for d in r.trend]
    series = sorted({k for d in r.trend for k in d.groups}, key=lambda k: k == "other")
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.add_subplot()
    stacks = [[d.groups.get(k, 0.0) for d in r.trend] for k in series]
    stacks.append([d.unheld_cost for d in r.trend])
    ax.stackplot(range(len(days)), *stacks, labels=[*series, "unheld"])
    ax.set_xticks(range(0, len(days), max(1, len(days) // 6)))
    ax.set_xticklabels(days[:: max(1, len(days) // 6)], fontsize=8)
    ax.set_ylabel(f"{r.currency} per {'day' if r.bucket_seconds == 86400 else 'step'}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, ncol=4)
    ax.set_title("Cost trend")
    out.append(("Daily trend", _svg(fig)))

    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.add_subplot()
    op = [d.carbon_operational_g / 1000 for d in r.trend]
    emb = [d.carbon_embodied_g / 1000 for d in r.trend]
    ax.bar(range(len(days)), op, color="#55a868", label="operational")
    ax.bar(range(len(days)), emb, bottom=op, color="#8172b3", label="embodied")
    ax.set_xticks(range(0, len(days), max(1, len(days) // 6)))
    ax.set_xticklabels(days[:: max(1, len(days) // 6)], fontsize=8)
    ax.set_ylabel("kg CO2e")
    ax.legend(fontsize=8)
    ax.set_title("Carbon by scope")
    out.append(("Carbon by scope", _svg(fig)))
    return out


def _table(headers: list[str], rows: list[tuple[list[str], bool]]) -> str:
    head = "".join(
        f'<th class="{"n" if i else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        f'<tr class="{"gap" if gap else ""}">'
        + "".join(
            f'<td class="{"n" if i else ""}">{html.escape(c)}</td>' for i, c in enumerate(row)
        )
        + "</tr>"
        for row, gap in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(r: Report) -> str:
    f, k, c = r.fleet, r.check, r.currency
    rows: list[tuple[list[str], bool]] = [
        (
            [
                g.name,
                money(g.cost),
                money(g.energy_cost),
                money(g.rental_cost),
                money(g.idle_cost),
                money(g.overhead_cost),
                num(g.energy_kwh),
                num(g.gpu_hours),
                num(g.stranded_gib_hours),
                kg(g.carbon_operational_g),
                kg(g.carbon_embodied_g),
                f"{g.cost_share:.1%}",
            ],
            g.gap is not None,
        )
        for g in r.groups
    ]
    blank = [""] * 10
    rows.append((["processes outside pods", money(f.outside_pods_cost), *blank], True))
    rows.append((["unheld (no process)", money(f.unheld_cost), *blank], True))
    headers = [r.by, f"cost {c}", "energy", "rental", "idle held", "overhead", "kWh", "GPU-h"]
    headers += ["stranded GiB-h", "kg CO2e op", "kg emb", "share"]
    recs = "".join(
        f"<li><b>{html.escape(x.subject)}</b>: {html.escape(x.text)}; saves "
        + html.escape(
            " and ".join(
                s
                for s in (
                    None if x.saving_cost is None else f"{money(x.saving_cost)} {c}",
                    None if x.saving_g is None else f"{kg(x.saving_g)} kg CO2e",
                )
                if s
            )
        )
        + f" <small>(evidence {html.escape(x.evidence_from)} to {html.escape(x.evidence_to)}, "
        f"{num(x.evidence_hours, 0)} h)</small></li>"
        for x in r.recommendations
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
    figures = "".join(
        f"<figure><figcaption>{html.escape(t)}</figcaption>{svg}</figure>" for t, svg in charts(r)
    )
    title = f"GPU FinOps report, {r.start} to {r.end}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{f.gpus} GPUs, {num(f.gpu_hours, 0)} GPU-hours; cost {money(f.cost)} {c} (energy "
        f"{money(f.energy_cost)}, rental {money(f.rental_cost)}); {num(f.energy_kwh)} kWh; "
        f"{kg(f.carbon_operational_g)} kg CO2e operational, {kg(f.carbon_embodied_g)} kg "
        f"embodied</p>"
        f'<div class="charts">{figures}</div>'
        f"<h2>By {html.escape(r.by)}</h2>{_table(headers, rows)}"
        f'<p class="check {"ok" if k.ok else "bad"}">{html.escape(check_line(r))}</p>'
        f"<h2>What to change</h2><ul>{recs or '<li>nothing found</li>'}</ul>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + f"<p><small>{r.queries} queries; step {r.step_seconds} s</small></p></body></html>\n"
    )
