"""The status page at `/`, loaded by a real headless Chromium (Debian's package)."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from test_serve import Exporter

from greenops_exporter.analysis.inference import ModelEfficiency, ModelTotals
from greenops_exporter.collect import InferenceSnapshot, Snapshot
from greenops_exporter.http.status_page import EnergyToday, human_energy, render_status

CHROMIUM = shutil.which("chromium")


def bursty_classes() -> set[str]:
    """The classes of the L4's first phase in the demo scenario, from the scenario file and
    the classes the recorded phases must fall in (helpers.EXPECTED_CLASS), not the page."""
    from importlib.resources import files

    import yaml

    from helpers import EXPECTED_CLASS

    demo = yaml.safe_load(files("greenops_exporter").joinpath("scenarios/demo.yaml").read_text())
    l4 = demo["gpus"][3]
    assert l4["model"] == "l4" and l4["schedule"][0]["phase"] == "bursty"
    # a burst is the compute phase, a gap idle with a context (backends/sim.py, _expand)
    return {EXPECTED_CLASS["compute_matmul_bf16"], EXPECTED_CLASS["idle_context"]}


L4_BURSTY_CLASSES = bursty_classes()


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
    assert [r[:2] for r in gpus] == [
        ["0", "NVIDIA H100 80GB HBM3"],
        ["1", "NVIDIA H100 80GB HBM3"],
        ["2", "NVIDIA A100-SXM4-80GB"],
        ["3", "NVIDIA L4"],
    ]
    assert [r[2] for r in gpus[:3]] == ["compute", "idle", "memory"]
    # the L4 spends its first minute in the demo's `bursty` phase: 2 s compute bursts, 3 s
    # idle gaps with a context held; the page is read within that minute, in one or the other
    assert {"compute", "idle"} == L4_BURSTY_CLASSES
    assert gpus[3][2] in L4_BURSTY_CLASSES
    power = float(gpus[0][3].removesuffix(" W"))
    assert 650 < power < 720
    today = re.fullmatch(r"(\d+(?:\.\d+)?) (J|Wh|kWh|MWh)", gpus[0][4])
    assert today, gpus[0][4]
    assert float(today[1]) > 0  # counted since the exporter started, not since the page opened
    assert len(today[1].replace(".", "").lstrip("0")) <= 3  # three significant digits
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


@pytest.mark.parametrize(
    ("joules", "shown"),
    [
        (0.0, "0 J"),
        (0.5, "0.5 J"),
        (334.9, "335 J"),  # the 9.303e-05 kWh
        (999.4, "999 J"),
        (999.6, "0.278 Wh"),  # 1000 J after rounding: no four-digit joules
        (3599.0, "1 Wh"),
        (45_000.0, "12.5 Wh"),
        (3.6e6 * 0.99996, "1 kWh"),  # 999.96 Wh rounds to 1000 Wh: the next unit
        (5.0e7, "13.9 kWh"),
        (3.6e9 * 2.5, "2.5 MWh"),
        (3.6e12, "1,000 MWh"),
    ],
)
def test_energy_in_human_units(joules: float, shown: str) -> None:
    assert human_energy(joules) == shown


def test_a_backend_that_cannot_start_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Not "0 GPU(s)": the backend is down, why, and since when."""
    from test_serve import free_port

    dcgm = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    exporter = Exporter("--backend", "dcgm", "--dcgm-url", dcgm, "--collect-interval", "1")
    try:
        exporter.wait_ready()
        started = time.time()
        status, _, body = exporter.get("/")
    finally:
        exporter.stop()
    assert status == 200
    page = body.decode()
    assert "0 GPU(s)" not in page
    down = re.search(r'<p class="down" id="backend-down">(.*?)</p>', page)
    assert down, page
    text = html.unescape(down[1])
    assert "backend dcgm is down since " in text
    assert f"dcgm-exporter at {dcgm}" in text  # why: the backend's own error
    since = re.search(r"since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", text)
    assert since
    when = datetime.strptime(since[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    assert started - 60 < when <= started  # the first cycle, before the page was asked for
    assert rows(page, "gpus") == []


def test_backend_down_since_is_the_first_failed_cycle() -> None:
    """Since when: the wall clock of the first cycle that could not open it, kept while it
    stays down, cleared once it opens."""
    from fakenvml import FakeNvml
    from greenops_exporter.backends.nvml import NvmlBackend
    from greenops_exporter.collect import Collector

    fake = FakeNvml()
    fake.library_missing = True
    wall = [1_795_300_000.0]
    collector = Collector(NvmlBackend(fake, clock=fake.clock), wall_clock=lambda: wall[0])

    async def cycle() -> Snapshot:
        collector._next_open = 0.0  # retry at once rather than after backend_retry_seconds
        return await collector.collect_once()

    first = asyncio.run(cycle())
    wall[0] += 120
    second = asyncio.run(cycle())
    assert not second.backend_up
    assert first.backend_down_since == second.backend_down_since == 1_795_300_000.0
    assert "NVML could not start" in second.backend_down_reason
    page = render_status(second, {}, "1.0")
    assert "backend nvml is down since 2026-11-21 22:26:40 UTC: NVML could not start" in page
    fake.library_missing = False
    third = asyncio.run(cycle())
    assert third.backend_up and third.backend_down_since is None
    assert third.backend_down_reason == ""
    assert 'id="backend-down"' not in render_status(third, {}, "1.0")


def test_a_value_not_known_reads_n_a_not_a_bare_unit() -> None:
    """After one cycle no class energy has been counted: the waste column says `n/a`, not
    `- %` (a unit with no number reads as a broken page); known values keep their unit."""
    from helpers import run_sim

    snap = run_sim({"gpus": [{"schedule": [{"phase": "compute", "seconds": 600}]}]}, 1)
    assert sum(snap.devices[0].waste.class_joules.values()) == 0  # nothing counted yet
    [gpu] = rows(render_status(snap, {}, "1.0"), "gpus")
    assert gpu[5] == "n/a"
    assert re.fullmatch(r"\d+ W", gpu[3])
