"""The report's test fleet in a real Prometheus: a month of a simulated 4 x 8 GPU fleet,
written by the exporter's own encoder, backfilled by promtool, served on 127.0.0.1 (built
once a session, when a test first asks for it); and the helpers its tests share."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backfill import build_tsdb, serve_tsdb
from greenops_exporter.cli.main import main
from reportfleet import START, FleetSpec, Truth, write_fleet

PROMETHEUS = shutil.which("prometheus")
NEEDS_PROMETHEUS = pytest.mark.skipif(
    PROMETHEUS is None or shutil.which("promtool") is None, reason="needs Debian's prometheus"
)
REL = 1e-9
SPEC = FleetSpec()
PERIOD = ["--from", str(START), "--to", str(SPEC.end)]


@contextlib.contextmanager
def prometheus_fleet(tmp: Path) -> Iterator[tuple[str, Truth]]:
    files, truth = write_fleet(SPEC, tmp / "om")
    build_tsdb(files, tmp / "tsdb")
    shutil.rmtree(tmp / "om")
    with serve_tsdb(tmp / "tsdb", tmp) as url:
        yield url, truth


def default_report(url: str) -> dict[str, Any]:
    """The default report (by namespace) as JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--prometheus", url, *PERIOD, "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def report_json(
    url: str, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[dict[str, Any], str]:
    assert main(["report", "--prometheus", url, *PERIOD, "--format", "json", *args]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def close(a: float, b: float) -> bool:
    return bool(a == pytest.approx(b, rel=REL, abs=1e-6))
