"""Parity with the nvml path: the recorded H100 trace, rendered into dcgm-exporter pages sample
by sample and served by a real HTTP server on 127.0.0.1 whose page changes over time, read by
the dcgm backend through the real collection loop. Every phase must fall in the nvml path's
class (>= 90 % of its steady samples), every phase's energy be within 1 % of phases_a.json,
and the pod that dcgm-exporter names get the energy NVML gives the process."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

import pytest

from dcgmpages import PageServer, h100_page
from fakenvml import FakeNvml, load_trace
from greenops_exporter.analysis.attribution import PodKey
from greenops_exporter.analysis.energy import window_energy
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.backends.nvml import NvmlBackend
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.commands.wiring import settings_from
from greenops_exporter.config.models import BackendConfig, Config
from helpers import EXPECTED_CLASS, PHASES

TRACE = load_trace()
STEADY_AFTER = 1.5  # seconds into a phase: the classes of its transition are not judged
POD = PodKey("bench", "matmul-0", "torch")
SETTINGS = settings_from(Config(backend=BackendConfig(kind="dcgm")))  # as `serve` has them


@dataclass
class Run:
    times: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    last: Snapshot | None = None
    requests: int = 0


def record(run: Run, t: float, snap: Snapshot) -> None:
    [d] = snap.devices
    assert d.up, d.stale_reason
    run.times.append(t)
    run.classes.append(str(d.waste.bottleneck))
    run.energy.append(d.energy_joules_total)
    run.last = snap


def via_nvml() -> Run:
    fake = FakeNvml()
    collector = Collector(NvmlBackend(fake, clock=fake.clock), monotonic=fake.clock)
    run = Run()

    async def go() -> None:
        for i in range(len(TRACE)):
            fake.cursor = i
            record(run, fake.clock(), await collector.collect_once())
        await collector.close()

    asyncio.run(go())
    return run


def via_dcgm(polls_per_page: int = 1, step: int = 1) -> Run:
    """`polls_per_page` > 1: the exporter reads faster than dcgm-exporter refreshes; `step`
    10: dcgm-exporter collects once a second (`-c 1000`) instead of the recording's 10 Hz."""
    now = [0.0]
    run = Run()
    with PageServer(h100_page(TRACE[0])) as server:
        backend = DcgmBackend(server.url, 0.5, clock=lambda: now[0])
        collector = Collector(backend, SETTINGS, monotonic=lambda: now[0])

        async def go() -> None:
            for sample in TRACE[::step]:
                server.page = h100_page(sample)
                for poll in range(polls_per_page):
                    now[0] = sample["t"] + 0.02 * poll
                    snap = await collector.collect_once()
                    if poll == 0:
                        record(run, sample["t"], snap)
            await collector.close()

        asyncio.run(go())
        run.requests = server.requests
    return run


@pytest.fixture(scope="module")
def nvml() -> Run:
    return via_nvml()


@pytest.fixture(scope="module")
def dcgm() -> Run:
    return via_dcgm()


def steady(step: int = 1) -> dict[str, list[int]]:
    """The samples of each phase from STEADY_AFTER seconds after it starts."""
    starts: dict[str, float] = {}
    out: dict[str, list[int]] = collections.defaultdict(list)
    for i, sample in enumerate(TRACE[::step]):
        starts.setdefault(sample["phase"], sample["t"])
        if sample["t"] - starts[sample["phase"]] >= STEADY_AFTER:
            out[sample["phase"]].append(i)
    return out


def test_every_phase_falls_in_the_class_of_the_nvml_path(nvml: Run, dcgm: Run) -> None:
    phases = steady()
    assert set(phases) >= {p["phase"] for p in PHASES}
    for phase, rows in phases.items():
        same = sum(dcgm.classes[i] == nvml.classes[i] for i in rows) / len(rows)
        assert same >= 0.9, (phase, collections.Counter(dcgm.classes[i] for i in rows))
        want = EXPECTED_CLASS.get(phase)
        if want:
            share = sum(dcgm.classes[i] == want for i in rows) / len(rows)
            assert share >= 0.9, (phase, collections.Counter(dcgm.classes[i] for i in rows))


def test_classes_hold_when_dcgm_exporter_collects_once_a_second() -> None:
    """The `-c 1000` the README advises, read at the exporter's default 1 Hz."""
    run = via_dcgm(step=10)
    for phase, rows in steady(step=10).items():
        want = EXPECTED_CLASS.get(phase)
        if want:
            assert all(run.classes[i] == want for i in rows), (phase, run.classes)
    # the energy counter is exact whatever the resolution: first to last sample
    sampled = TRACE[::10]
    truth = (sampled[-1]["energy_mj"] - sampled[0]["energy_mj"]) / 1000
    assert run.energy[-1] - run.energy[0] == pytest.approx(truth, abs=0.01)


def test_every_phase_energy_within_1_percent(dcgm: Run) -> None:
    for phase in PHASES:
        window = window_energy(dcgm.times, dcgm.energy, phase["t0"], phase["t1"])
        assert window.energy_joules == pytest.approx(phase["energy_j"], rel=0.01), phase["phase"]


def test_the_pod_gets_what_nvml_gives_its_process(nvml: Run, dcgm: Run) -> None:
    assert nvml.last is not None and dcgm.last is not None
    [d] = dcgm.last.devices
    [(key, nvml_joules)] = nvml.last.devices[0].process_energy.items()
    assert key.pid == TRACE[-1]["procs"][0]["pid"]
    assert d.pod_energy[POD] == pytest.approx(nvml_joules, rel=0.01)
    # the pod's share of carbon and cost follows its energy (static intensity, 1 PUE)
    costs = d.pod_costs[POD]
    assert costs.operational_grams == pytest.approx(
        d.costs.operational_grams * d.pod_energy[POD] / d.energy_joules_total, rel=0.01
    )
    [process] = d.process_energy
    assert (process.namespace, process.pod, process.container) == ("bench", "matmul-0", "torch")


def test_one_request_per_cycle(dcgm: Run) -> None:
    assert dcgm.requests == len(TRACE) + 1  # and one to discover the GPU


def test_a_page_read_twice_counts_once(dcgm: Run) -> None:
    """dcgm-exporter serves its cache between collections: reading it twice per sample
    changes neither the energy nor the time in each class."""
    triple = via_dcgm(polls_per_page=2)
    assert triple.energy == pytest.approx(dcgm.energy, rel=1e-9)
    assert triple.classes == dcgm.classes
    assert triple.last is not None and dcgm.last is not None
    seconds = triple.last.devices[0].waste.class_seconds
    assert seconds == pytest.approx(dict(dcgm.last.devices[0].waste.class_seconds), rel=1e-9)
    total = sum(seconds.values())
    assert total == pytest.approx(TRACE[-1]["t"] - TRACE[0]["t"], rel=1e-6)
