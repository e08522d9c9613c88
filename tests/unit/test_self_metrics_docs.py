"""The README's description of the self-metrics a scrape reads about itself is their HELP,
word for word, and says what the exporter does (rendered once per collection cycle)."""

from __future__ import annotations

import re

import pytest

from documentation import documentation
from greenops_exporter.metrics.names_self import (
    SCRAPE_COLLECTOR_DURATION,
    SCRAPE_COLLECTOR_SUCCESS,
)

README = documentation()


def readme_row(name: str) -> str:
    """The description column of the metric's row in the README's metrics tables."""
    [row] = re.findall(rf"^\| `{re.escape(name)}` \|[^|]*\|[^|]*\| (.*) \|$", README, re.M)
    return str(row)


@pytest.mark.parametrize("spec", [SCRAPE_COLLECTOR_SUCCESS, SCRAPE_COLLECTOR_DURATION])
def test_readme_says_what_the_help_says(spec) -> None:  # type: ignore[no-untyped-def]
    help_text = spec.help.rstrip(".")
    assert readme_row(spec.name).lower() == help_text.lower()


def test_the_help_describes_one_rendering_per_cycle() -> None:
    """Bodies are encoded once per Snapshot (server.ExpositionCache), not per scrape."""
    assert "per scrape" not in SCRAPE_COLLECTOR_SUCCESS.help.replace("not per scrape", "")
    assert "0 when it failed" in SCRAPE_COLLECTOR_SUCCESS.help
