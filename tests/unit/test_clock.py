"""The collection clock keeps a fixed grid: no drift, and overrun ticks skipped and counted."""

from __future__ import annotations

import pytest

from greenops_exporter.collect.clock import FixedRate


def test_ticks_stay_on_the_grid_whatever_each_cycle_costs() -> None:
    clock = FixedRate(0.1, start=100.0)
    now = 100.0
    wakes = []
    for cost in [0.007, 0.03, 0.0, 0.09, 0.05] * 200:  # cycles of varying cost, all in time
        now += cost
        now += clock.delay_to_next(now)
        wakes.append(now)
    assert wakes[-1] == pytest.approx(100.0 + 0.1 * 1000)  # 1000 ticks, no drift
    assert clock.skipped == 0


def test_an_overrun_skips_the_missed_ticks_and_counts_them() -> None:
    clock = FixedRate(1.0, start=0.0)
    assert clock.delay_to_next(0.2) == pytest.approx(0.8)  # tick 1 at 1.0
    assert clock.delay_to_next(3.5) == pytest.approx(0.5)  # ticks 2 and 3 missed: 4.0
    assert clock.skipped == 2
    assert clock.delay_to_next(4.1) == pytest.approx(0.9)  # back on the grid at 5.0
    assert clock.skipped == 2
