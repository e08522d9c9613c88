"""Metrics: every name and HELP text (names*.py), Snapshot -> series (families.py), and
series -> /metrics bytes (encode.py)."""

from greenops_exporter.metrics import names, names_accounts, names_host, names_self
from greenops_exporter.metrics.encode import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    SnapshotCollector,
)
from greenops_exporter.metrics.names import COLLECTOR_NAMES
from greenops_exporter.metrics.spec import MetricSpec

ALL_METRICS: tuple[MetricSpec, ...] = tuple(
    value
    for module in (names, names_accounts, names_host, names_self)
    for value in vars(module).values()
    if isinstance(value, MetricSpec)
)

__all__ = [
    "ALL_METRICS",
    "COLLECTOR_NAMES",
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Exposition",
    "MetricSpec",
    "SnapshotCollector",
]
