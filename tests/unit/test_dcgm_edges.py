"""The dcgm backend's edges no fixture page reached: a non-zero memory-copy utilisation (a
percentage on the page, a ratio in a Reading) and a page where only one GPU's values
changed (the other's reading stays the cached one: no new interval for it)."""

from __future__ import annotations

import re

import pytest

from dcgmpages import FIXTURES, PageServer, labels, render
from greenops_exporter.backends.base import ReadPlan
from greenops_exporter.backends.dcgm import DcgmBackend

RTX = (FIXTURES / "rtx4000ada_k8s.txt").read_text()


def test_memory_copy_utilisation_is_a_ratio_not_a_percentage() -> None:
    """The live RTX 4000 Ada page with its `DCGM_FI_DEV_MEM_COPY_UTIL` (HELP: "Memory
    utilization (in %).") at 37 instead of the idle 0 it was recorded at."""
    page, n = re.subn(r"^(DCGM_FI_DEV_MEM_COPY_UTIL\{.*\}) 0$", r"\1 37", RTX, flags=re.M)
    assert n == 1
    with PageServer(page) as server:
        backend = DcgmBackend(server.url, 2.0)
        backend.open()
        reading = backend.read(0, ReadPlan())
    assert reading.utilization_memory == pytest.approx(0.37)


def _page(power: tuple[float, float]) -> str:
    return render(
        ("DCGM_FI_DEV_POWER_USAGE", labels(gpu=g, uuid=f"GPU-{g}"), power[g]) for g in (0, 1)
    )


def test_a_gpu_whose_values_did_not_change_keeps_its_reading_when_another_did() -> None:
    """dcgm-exporter refreshed GPU 0's values only: the page's text changed (so it is parsed
    anew), yet GPU 1's series are the same, so its reading is the cached one, stamped when
    it was first read (a new stamp would make an interval out of no new sample)."""
    now = [10.0]
    with PageServer(_page((100.0, 200.0))) as server:
        backend = DcgmBackend(server.url, 2.0, clock=lambda: now[0])
        backend.open()
        first0, first1 = backend.read(0, ReadPlan()), backend.read(1, ReadPlan())
        server.page = _page((150.0, 200.0))
        now[0] = 11.0
        changed0, same1 = backend.read(0, ReadPlan()), backend.read(1, ReadPlan())
    assert (changed0.timestamp, changed0.power_watts) == (11.0, 150.0)
    assert first0.timestamp == first1.timestamp == 10.0
    assert (same1.timestamp, same1.power_watts) == (10.0, 200.0)
