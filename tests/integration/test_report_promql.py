"""The report's per-step increase against Debian's Prometheus on hand-written samples:
restarts inside a step, a restart that comes back above the previous step's value, a
series that starts, one that ends; each against the exact increase."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from backfill import serve_tsdb
from greenops_exporter.commands.report.client import Client, Endpoint
from greenops_exporter.commands.report.promql import bucket_increase
from reportprom import NEEDS_PROMETHEUS

pytestmark = NEEDS_PROMETHEUS
T0 = 1_788_220_800  # a day boundary
STEP = 3600
# samples every 15 min over 4 hours, one series per case; the exact increase of each
CASES: dict[str, tuple[list[float | None], float]] = {
    # 0 1 2 3 | 4 5 6 7 | 8 ... quarter hours; restart between the 6th and 7th sample
    "plain": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 16),
    "restart": ([0, 10, 20, 30, 40, 50, 60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 60 + 10),
    # 0 until the hour's start, then 3 before the restart and 1 after: A >= B, yet a reset
    "restart_above": ([0, 0, 0, 0, 0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3 + 9),
    "starts": ([None] * 6 + [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 14),
    "ends": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] + [None] * 7, 9),
}


@contextlib.contextmanager
def prometheus(tmp: Path) -> Iterator[str]:
    om = tmp / "cases.om"
    lines = ["# HELP x_total t\n", "# TYPE x_total counter\n"]
    for name, (values, _exact) in CASES.items():
        for i, v in enumerate(values):
            if v is not None:
                lines.append(f'x_total{{case="{name}"}} {v} {T0 + i * 900}\n')
    om.write_text("".join([*lines, "# EOF\n"]))
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(tmp / "tsdb")],
        check=True,
        capture_output=True,
    )
    with serve_tsdb(tmp / "tsdb", tmp) as url:
        yield url


def test_each_case_sums_to_its_exact_increase(tmp_path: Path) -> None:
    with prometheus(tmp_path) as url:
        expr = bucket_increase("x_total", "", ("case",), STEP, 4 * STEP)
        result = Client(Endpoint(url)).instant(expr, T0 + 4 * STEP)
    got = {item["metric"]["case"]: float(item["value"][1]) for item in result}
    assert got == {name: exact for name, (_values, exact) in CASES.items()}
