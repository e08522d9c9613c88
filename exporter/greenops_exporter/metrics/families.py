"""Snapshot -> series: every enabled collector (`collectors/`, one module each), each one's
success and duration, then the exporter's own metrics.

Families are built from the collection loop's last Snapshot, never from NVML. One collector
that fails never fails the scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from greenops_exporter.collect.snapshot import Snapshot
from greenops_exporter.metrics.collectors import RENDERERS
from greenops_exporter.metrics.names import COLLECTOR_NAMES
from greenops_exporter.metrics.names_self import (
    BACKEND_ERRORS,
    BACKEND_INFO,
    BACKEND_UP,
    BUILD_INFO,
    COLLECTION_CYCLES,
    COLLECTION_DURATION,
    COLLECTION_LAST,
    COLLECTION_SKIPPED,
    COLLECTOR_ERRORS,
    GPU_LAST_SUCCESS,
    GPU_READ_DURATION,
    SCRAPE_COLLECTOR_DURATION,
    SCRAPE_COLLECTOR_SUCCESS,
    SOURCE_AGE,
    SOURCE_ERRORS,
    SOURCE_UP,
)
from greenops_exporter.metrics.output import Families, Labels

__all__ = ["Families", "Labels", "render"]

log = logging.getLogger(__name__)


def render(
    snap: Snapshot,
    hostname: str | None,
    enabled: Sequence[str],
    build: tuple[str, str, str],
) -> Families:
    """Every enabled collector's series, then each collector's success and duration, then
    the exporter's own metrics."""
    out = Families(hostname)
    status: list[tuple[str, int, float]] = []
    for name in COLLECTOR_NAMES:
        if name not in enabled:
            continue
        part = Families(hostname)
        started = time.perf_counter()
        try:
            RENDERERS[name](part, snap)
        except Exception:  # one broken collector must not fail the scrape
            log.exception("collector %s failed to render", name)
            ok = 0
        else:
            for family_name, family in part.by_name.items():
                out.by_name[family_name] = family
            ok = 1
        status.append((name, ok, time.perf_counter() - started))
    for name, ok, _seconds in status:
        out.add(SCRAPE_COLLECTOR_SUCCESS, ok, None, name)
    for name, _ok, seconds in status:
        out.add(SCRAPE_COLLECTOR_DURATION, seconds, None, name)
    _render_self(out, snap, build)
    return out


def _render_self(out: Families, snap: Snapshot, build: tuple[str, str, str]) -> None:
    out.add(BUILD_INFO, 1, None, *build)
    out.add(BACKEND_INFO, 1, None, snap.backend, snap.backend_reason)
    out.add(BACKEND_UP, 1 if snap.backend_up else 0)
    for operation, count in sorted(snap.backend_errors.items()):
        out.add(BACKEND_ERRORS, count, None, operation)
    out.add(COLLECTION_CYCLES, snap.cycles_total)
    out.add(COLLECTION_SKIPPED, snap.skipped_cycles_total)
    out.add(COLLECTION_DURATION, snap.cycle_seconds)
    out.add(COLLECTION_LAST, snap.cycle_unix)
    for source in snap.sources:
        out.add(SOURCE_UP, 1 if source.up else 0, None, source.kind, source.name)
        out.add(SOURCE_ERRORS, source.errors, None, source.kind, source.name)
        out.add(SOURCE_AGE, source.age_seconds, None, source.kind, source.name)
    for d in snap.devices:
        for call, count in sorted(d.errors.items()):
            out.add(COLLECTOR_ERRORS, count, d, call)
        out.add(GPU_READ_DURATION, d.read_seconds, d)
        out.add(GPU_LAST_SUCCESS, d.last_success_unix, d)
