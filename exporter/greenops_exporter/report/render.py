"""The report in the format asked for."""

from __future__ import annotations

from .model import Report


def render(report: Report, fmt: str) -> str:
    if fmt in ("text", "markdown"):
        from .render_text import render as text

        return text(report, markdown=fmt == "markdown")
    if fmt == "csv":
        from .render_data import render_csv

        return render_csv(report)
    if fmt == "json":
        from .render_data import render_json

        return render_json(report)
    from .render_html import render_html

    return render_html(report)
