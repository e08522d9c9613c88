"""The bottleneck classifier on each side of every threshold, for the default thresholds and
for a shifted set (so a rule that reads the wrong threshold, or hard-codes one, fails).

Each case holds every other signal at a value that decides nothing, moves one signal to the
threshold itself (`>=` fires there) and to the float just below it, and names the class on
each side. The values come from the Thresholds given, never from literals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import pytest

from greenops_exporter.analysis.bottleneck import (
    BottleneckClass,
    Signals,
    Thresholds,
    classify,
)
from greenops_exporter.backends.base import GpmReading, Reading

IDLE, COMPUTE, MEMORY, IO, OVERHEAD = (
    BottleneckClass.IDLE,
    BottleneckClass.COMPUTE,
    BottleneckClass.MEMORY,
    BottleneckClass.IO,
    BottleneckClass.OVERHEAD,
)

DEFAULT = Thresholds()
# Every threshold moved, and the GPM DRAM threshold now below the SM one (the defaults have
# it above), so swapping the two in the code fails on one set or the other.
SHIFTED = Thresholds(
    memory_dram_active=0.45,
    compute_sm_active=0.7,
    compute_tensor_active=0.4,
    io_bytes_per_second=3.0 * 2**30,
    io_sm_active_max=0.2,
    busy_activity=0.08,
    basic_memory_utilization=0.5,
    basic_compute_utilization=0.9,
    basic_io_memory_utilization_max=0.3,
)
SETS = {"default": DEFAULT, "shifted": SHIFTED}


def below(x: float) -> float:
    """The largest float under x: the tightest value on the other side of `>=`."""
    return math.nextafter(x, -math.inf)


@dataclass(frozen=True)
class Signal:
    """What the classifier reads, with nothing deciding by default."""

    util: float = 0.0
    memory: float = 0.0
    sm: float = 0.0
    dram: float = 0.0
    tensor: float = 0.0
    pcie_tx: float = 0.0
    pcie_rx: float = 0.0
    gpm: bool = True
    counter_rate: float | None = None  # the PCIe counter's rate (without GPM)


def classify_signal(s: Signal, t: Thresholds) -> tuple[BottleneckClass, Signals]:
    gpm = (
        GpmReading(
            sm_active=s.sm,
            dram_active=s.dram,
            tensor_active=s.tensor,
            pcie_tx_bytes_per_second=s.pcie_tx,
            pcie_rx_bytes_per_second=s.pcie_rx,
        )
        if s.gpm
        else None
    )
    reading = Reading(timestamp=1.0, utilization_gpu=s.util, utilization_memory=s.memory, gpm=gpm)
    return classify(reading, s.counter_rate, t)


# (threshold, signal at a value v, class at the threshold, class just below it)
Case = tuple[str, Callable[[Thresholds, float], Signal], BottleneckClass, BottleneckClass]

CASES: dict[str, Case] = {
    # --- with GPM
    "gpm-dram": ("memory_dram_active", lambda t, v: Signal(dram=v), MEMORY, IDLE),
    # DRAM just under its threshold with the SMs just under theirs: compute must not fire,
    # and memory only at its own threshold (a swapped pair fires the wrong one)
    "gpm-dram-beside-sm": (
        "memory_dram_active",
        lambda t, v: Signal(dram=v, sm=below(t.compute_sm_active)),
        MEMORY,
        OVERHEAD,
    ),
    "gpm-sm": ("compute_sm_active", lambda t, v: Signal(sm=v), COMPUTE, OVERHEAD),
    "gpm-sm-beside-dram": (
        "compute_sm_active",
        lambda t, v: Signal(sm=v, dram=below(t.memory_dram_active)),
        COMPUTE,
        OVERHEAD,
    ),
    "gpm-tensor": ("compute_tensor_active", lambda t, v: Signal(tensor=v), COMPUTE, IDLE),
    "gpm-io-rx": ("io_bytes_per_second", lambda t, v: Signal(pcie_rx=v), IO, IDLE),
    "gpm-io-tx": ("io_bytes_per_second", lambda t, v: Signal(pcie_tx=v), IO, IDLE),
    # the two directions add up: half each way reaches the threshold
    "gpm-io-both": (
        "io_bytes_per_second",
        lambda t, v: Signal(pcie_tx=v / 2, pcie_rx=v / 2),
        IO,
        IDLE,
    ),
    # the io rule's SM guard: PCIe busy while the SMs work (above `busy`) is not io
    "gpm-io-sm-guard": (
        "io_sm_active_max",
        lambda t, v: Signal(sm=v, pcie_rx=t.io_bytes_per_second),
        OVERHEAD,
        IO,
    ),
    "gpm-busy-sm": ("busy_activity", lambda t, v: Signal(sm=v), OVERHEAD, IDLE),
    "gpm-busy-util": ("busy_activity", lambda t, v: Signal(util=v), OVERHEAD, IDLE),
    # --- without GPM
    "basic-memory": (
        "basic_memory_utilization",
        lambda t, v: Signal(gpm=False, memory=v),
        MEMORY,
        IDLE,
    ),
    "basic-io-rate": (
        "io_bytes_per_second",
        lambda t, v: Signal(gpm=False, counter_rate=v),
        IO,
        IDLE,
    ),
    # copies that also move device memory are not io: the guard on memory utilisation
    "basic-io-memory-guard": (
        "basic_io_memory_utilization_max",
        lambda t, v: Signal(gpm=False, memory=v, counter_rate=t.io_bytes_per_second),
        IDLE,
        IO,
    ),
    "basic-compute": (
        "basic_compute_utilization",
        lambda t, v: Signal(gpm=False, util=v),
        COMPUTE,
        OVERHEAD,
    ),
    "basic-busy": ("busy_activity", lambda t, v: Signal(gpm=False, util=v), OVERHEAD, IDLE),
}


def test_every_threshold_has_a_case() -> None:
    assert {case[0] for case in CASES.values()} == {f.name for f in fields(Thresholds)}
    # the shifted set really moves every threshold, and orders DRAM under SM
    assert all(getattr(SHIFTED, f.name) != getattr(DEFAULT, f.name) for f in fields(Thresholds))
    assert SHIFTED.memory_dram_active < SHIFTED.compute_sm_active
    assert DEFAULT.memory_dram_active > DEFAULT.compute_sm_active


@pytest.mark.parametrize("thresholds", SETS.values(), ids=SETS.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_side_of_each_threshold(case: Case, thresholds: Thresholds) -> None:
    name, signal, at, under = case
    value = getattr(thresholds, name)
    on, off = signal(thresholds, value), signal(thresholds, below(value))
    want_signals = Signals.GPM if on.gpm else Signals.BASIC
    assert classify_signal(on, thresholds) == (at, want_signals), (name, value)
    assert classify_signal(off, thresholds) == (under, want_signals), (name, below(value))


@pytest.mark.parametrize("thresholds", SETS.values(), ids=SETS.keys())
def test_the_rules_apply_in_their_order(thresholds: Thresholds) -> None:
    """Where two rules both fire, the earlier wins: memory over compute, compute over io,
    and without GPM memory over io over compute."""
    t = thresholds
    both = Signal(dram=t.memory_dram_active, sm=t.compute_sm_active)
    assert classify_signal(both, t)[0] is MEMORY
    tensor_and_io = Signal(tensor=t.compute_tensor_active, pcie_rx=t.io_bytes_per_second)
    assert classify_signal(tensor_and_io, t)[0] is COMPUTE
    basic = Signal(
        gpm=False,
        memory=t.basic_memory_utilization,
        util=t.basic_compute_utilization,
        counter_rate=t.io_bytes_per_second,
    )
    assert classify_signal(basic, t)[0] is MEMORY
    basic_io = Signal(
        gpm=False, util=t.basic_compute_utilization, counter_rate=t.io_bytes_per_second
    )
    assert classify_signal(basic_io, t)[0] is IO
