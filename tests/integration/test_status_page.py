"""The status page at `/`, loaded by a real headless Chromium (Debian's package)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest
from test_serve import Exporter

from greenops_exporter.analysis.inference import ModelEfficiency, ModelTotals
from greenops_exporter.collect import InferenceSnapshot, Snapshot
from greenops_exporter.status_page import EnergyToday, render_status

CHROMIUM = shutil.which("chromium")


class Cells(HTMLParser):
    """The text of every table row, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(page: str, table: str) -> list[list[str]]:
    parser = Cells()
    parser.feed(page)
    return parser.tables[table][1:]  # without the header


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium (Debian package) is installed by make test",
)
def test_chromium_renders_one_row_per_gpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exporter = Exporter("--backend", "sim", "--collect-interval", "0.2")
    try:
        exporter.wait_ready()
        time.sleep(2.0)
        result = subprocess.run(
            [
                CHROMIUM or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                exporter.base + "/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        exporter.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<title>greenops-exporter</title>" in dom
    gpus = rows(dom, "gpus")
    assert [r[:3] for r in gpus] == [
        ["0", "NVIDIA H100 80GB HBM3", "compute"],
        ["1", "NVIDIA H100 80GB HBM3", "idle"],
        ["2", "NVIDIA A100-SXM4-80GB", "memory"],
        ["3", "NVIDIA L4", gpus[3][2]],
    ]
    power = float(gpus[0][3].removesuffix(" W"))
    assert 650 < power < 720
    today_kwh = float(gpus[0][4].removesuffix(" kWh"))
    assert today_kwh > 0  # counted since the exporter started, not since the page was opened
    assert gpus[1][5] == "100 %"  # the idle GPU's energy is all waste
    assert re.fullmatch(r"\d+\.\d g", gpus[0][6])
    assert "release the GPU" in gpus[1][7]
    assert 'http-equiv="refresh"' in dom


def snapshot_with_inference() -> Snapshot:
    model = ModelEfficiency("llama", ModelTotals(1000.0, 50.0), 20.0, 2.5, 0.5, 0.004, 0.0005)
    return Snapshot(
        "sim", "test", True, inference=(InferenceSnapshot("chat", "vllm", 1000.0, (model,)),)
    )


def test_inference_table_and_escaping() -> None:
    page = render_status(snapshot_with_inference(), {}, "<1.0>")
    assert "&lt;1.0&gt;" in page and "<1.0>" not in page
    assert rows(page, "inference") == [["chat", "llama", "20 J", "2.5 J", "0.004 g"]]


def test_energy_today_resets_at_midnight_utc() -> None:
    from helpers import run_sim

    clock = [1_795_300_000.0]  # 2026-11-22, some time in the afternoon UTC
    today = EnergyToday(lambda: clock[0])
    first = run_sim(
        {"gpus": [{"processes": [{"pid": 1}], "schedule": [{"phase": "compute", "seconds": 600}]}]},
        5,
    )
    today.observe(first)
    uuid = first.devices[0].info.uuid
    assert today.joules[uuid] == pytest.approx(first.devices[0].energy_joules_total)
    clock[0] += 86400  # the next day: the baseline moves to the counter at that cycle
    today.observe(first)
    assert today.joules[uuid] == 0.0
