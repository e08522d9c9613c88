"""Fixtures of the integration tests: the report's test fleet in a real Prometheus, built
once a session when a test first asks for it (see tests/reportprom.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reportfleet import Truth
from reportprom import default_report, prometheus_fleet


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Truth]]:
    with prometheus_fleet(tmp_path_factory.mktemp("report")) as running:
        yield running


@pytest.fixture(scope="session")
def by_namespace(fleet: tuple[str, Truth]) -> dict[str, Any]:
    return default_report(fleet[0])
