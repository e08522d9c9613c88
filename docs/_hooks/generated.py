"""MkDocs hook: pages generated at build time from their sources, so they cannot drift:
the home page from the README, the metrics reference from the code's own metric specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS = "<!-- metrics-reference -->"
README = "<!-- readme -->"
ROOT = Path(__file__).resolve().parents[2]


def reference_table() -> str:
    from greenops_exporter.metrics import ALL_METRICS

    rows = ["| metric | type | labels | HELP |", "| --- | --- | --- | --- |"]
    for spec in sorted(ALL_METRICS, key=lambda s: s.name):
        labels = ", ".join(f"`{label}`" for label in spec.label_names(None)) or "-"
        text = spec.help.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.kind} | {labels} | {text} |")
    return "\n".join(rows)


def home_page() -> str:
    """The README, its links made relative to the docs folder it points into."""
    return (ROOT / "README.md").read_text().replace("](docs/", "](")


def on_page_markdown(markdown: str, **_: Any) -> str:
    if METRICS in markdown:
        markdown = markdown.replace(METRICS, reference_table())
    if README in markdown:
        markdown = markdown.replace(README, home_page())
    return markdown
