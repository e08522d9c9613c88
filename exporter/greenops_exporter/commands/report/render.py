"""The report in the format asked for."""

from __future__ import annotations

from greenops_exporter.commands.report.model import Report


def render(report: Report, fmt: str) -> str:
    if fmt in ("text", "markdown"):
        from greenops_exporter.commands.report.render_text import render as text

        return text(report, markdown=fmt == "markdown")
    if fmt == "csv":
        from greenops_exporter.commands.report.render_data import render_csv

        return render_csv(report)
    if fmt == "json":
        from greenops_exporter.commands.report.render_data import render_json

        return render_json(report)
    from greenops_exporter.commands.report.render_html import render_html

    return render_html(report)
