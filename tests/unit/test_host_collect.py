"""Host energy through the collection and /metrics: a powercap tree in the kernel's layout,
a sim fleet, and (for the split) real child processes that burn CPU under the GPU
processes' pids. What cannot be read is said once, listed as unsupported, not exported."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from greenops_exporter.analysis.inference import InferenceAccount
from greenops_exporter.backends.sim import Scenario, SimBackend
from greenops_exporter.cli.main import main
from greenops_exporter.collect import Collector, CollectSettings, InferenceBinding, Snapshot
from greenops_exporter.collect.settings import HostSettings
from greenops_exporter.metrics import Exposition
from greenops_exporter.sources import rapl
from greenops_exporter.sources.inference import KINDS, InferenceSource
from powercap import INTEL_2S, FakePowercap

ONE_GPU = {"gpus": [{"model": "h100-sxm", "schedule": [{"phase": "compute", "seconds": 600}]}]}
KWH = 3.6e6


class Fleet:
    """A sim fleet and the host collector on a fake powercap tree, one second a cycle on an
    injected clock."""

    def __init__(
        self,
        tree: FakePowercap,
        scenario: dict[str, Any] = ONE_GPU,
        inference: Sequence[InferenceBinding] = (),
        **host: Any,
    ) -> None:
        self.now = [100.0]
        backend = SimBackend(Scenario.model_validate(scenario), clock=lambda: self.now[0])
        settings = HostSettings(powercap_root=tree.root, pue=1.5, energy_price_per_kwh=0.2)
        self.collector = Collector(
            backend,
            CollectSettings(host=replace(settings, **host)),
            monotonic=lambda: self.now[0],
            inference=inference,
        )

    def run(self, *steps: Callable[[], None]) -> Snapshot:
        """A cycle, then for each step: the step, one second, a cycle."""

        async def go() -> Snapshot:
            snap = await self.collector.collect_once()
            for step in steps:
                step()
                self.now[0] += 1.0
                snap = await self.collector.collect_once()
            await self.collector.close()
            return snap

        return asyncio.run(go())


def render(snap: Snapshot) -> tuple[str, dict[str, Any]]:
    text = Exposition("node-a").encode(snap).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def series(families: dict[str, Any], name: str) -> dict[tuple[str, ...], float]:
    """Samples of a family by their labels (hostname first), value only."""
    family = families.get(name.removesuffix("_total"))
    if family is None:
        return {}
    return {
        tuple(v for k, v in sorted(s.labels.items())): s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }


ZONES = {"p0": "intel-rapl:0", "p1": "intel-rapl:1", "d0": "intel-rapl:0:2"}
ZONES |= {"d1": "intel-rapl:1:0", "core0": "intel-rapl:0:0", "psys": "intel-rapl:2"}


def advance(tree: FakePowercap, **joules: float) -> Callable[[], None]:
    def step() -> None:
        for short, j in joules.items():
            tree.advance(ZONES[short], j)

    return step


def test_zones_are_exported_per_node_with_power_carbon_and_cost(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    fleet = Fleet(tree)
    step = advance(tree, p0=200.0, p1=100.0, d0=20.0, d1=10.0, core0=150.0, psys=400.0)
    snap = fleet.run(step, step)
    text, families = render(snap)
    energy = series(families, "greenops_host_energy_joules_total")
    # labels sorted: hostname, package, source, zone
    assert energy[("node-a", "0", "counter", "package")] == pytest.approx(400.0)
    assert energy[("node-a", "1", "counter", "package")] == pytest.approx(200.0)
    assert energy[("node-a", "0", "counter", "dram")] == pytest.approx(40.0)
    assert energy[("node-a", "0", "counter", "core")] == pytest.approx(300.0)
    assert energy[("node-a", "", "counter", "psys")] == pytest.approx(800.0)
    power = series(families, "greenops_host_power_watts")
    assert power[("node-a", "0", "counter", "package")] == pytest.approx(200.0)  # J per 1 s
    family = families["greenops_host_power_watts"]
    assert all("gpu" not in s.labels and "uuid" not in s.labels for s in family.samples)
    # sim pids are not this machine's: every joule of package and dram is `other`
    holders = series(families, "greenops_host_holder_energy_joules_total")
    assert holders[("other", "node-a", "counter", "package")] == pytest.approx(600.0)
    assert holders[("process", "node-a", "counter", "package")] == 0.0
    assert holders[("other", "node-a", "counter", "dram")] == pytest.approx(60.0)
    carbon = series(families, "greenops_host_carbon_grams_total")
    intensity = snap.intensity.grams_per_kwh if snap.intensity else 0.0
    assert carbon[("node-a", "counter", "package")] == pytest.approx(600 / KWH * 1.5 * intensity)
    cost = series(families, "greenops_host_cost_total")
    assert cost[("USD", "node-a", "counter", "dram")] == pytest.approx(60 / KWH * 1.5 * 0.2)
    assert not series(families, "greenops_host_unsupported_capability_info")
    promtool = shutil.which("promtool")
    if promtool is not None:  # the whole exposition, host families included, lints clean
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def root_only(monkeypatch: pytest.MonkeyPatch, tree: FakePowercap, *zone_ids: str) -> None:
    """As on a kernel after CVE-2020-8694 for a non-root reader. CI runs as root, where mode
    bits do not stop a read, so the error is raised at the one function that reads the file."""
    real = rapl.read_energy_uj
    denied = {tree.paths[z] for z in zone_ids}

    def read(path: Path) -> int:
        if path in denied:
            raise PermissionError(13, "Permission denied", str(path / "energy_uj"))
        return real(path)

    monkeypatch.setattr(rapl, "read_energy_uj", read)


def test_a_root_only_counter_is_said_once_listed_and_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    root_only(monkeypatch, tree, "intel-rapl:0:2", "intel-rapl:1:0")
    caplog.set_level(logging.INFO)
    step = advance(tree, p0=10.0, d0=5.0, d1=5.0)
    snap = Fleet(tree).run(step, step, step)
    said = [r.getMessage() for r in caplog.records if "CVE-2020-8694" in r.getMessage()]
    assert len(said) == 1, said  # once, for both zones, however many cycles
    assert "intel-rapl:0:2 (dram)" in said[0] and "intel-rapl:1:0 (dram)" in said[0]
    assert "readable by root only" in said[0]
    _, families = render(snap)
    unsupported = series(families, "greenops_host_unsupported_capability_info")
    assert unsupported == {
        ("rapl_energy", "node-a", "0", "dram"): 1.0,
        ("rapl_energy", "node-a", "1", "dram"): 1.0,
    }
    for name in ("greenops_host_energy_joules_total", "greenops_host_power_watts"):
        zones = {labels[-1] for labels in series(families, name)}
        assert "dram" not in zones and "package" in zones  # nothing for it, the rest serves
    assert snap.host is not None and all(z != "dram" for (_, z, _) in snap.host.holder_energy)


def test_check_lists_the_root_only_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    root_only(monkeypatch, tree, "intel-rapl:0:2")
    assert main(["check", "--backend", "sim", "--powercap-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"host energy (RAPL under {tmp_path}):" in out
    assert "package 0" in out and "(counter)" in out
    assert "unsupported: rapl_energy dram 0: permission denied: energy_uj is readable" in out


def test_a_zone_that_fails_later_goes_stale_and_the_rest_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    fleet = Fleet(tree)
    real = rapl.read_energy_uj
    failing = tree.paths["intel-rapl:1"]

    def fail() -> None:
        def read(path: Path) -> int:
            if path == failing:
                raise OSError(5, "Input/output error")
            return real(path)

        monkeypatch.setattr(rapl, "read_energy_uj", read)
        tree.advance("intel-rapl:0", 50.0)

    caplog.set_level(logging.WARNING)
    snap = fleet.run(advance(tree, p0=50.0, p1=30.0), fail, advance(tree, p0=50.0))
    _, families = render(snap)
    up = series(families, "greenops_host_zone_up")
    assert up[("node-a", "1", "package")] == 0 and up[("node-a", "0", "package")] == 1
    errors = series(families, "greenops_host_read_errors_total")
    assert errors[("node-a", "1", "package")] == 2
    power = series(families, "greenops_host_power_watts")
    assert ("node-a", "1", "counter", "package") not in power  # no stale value as current
    assert power[("node-a", "0", "counter", "package")] == pytest.approx(50.0)
    energy = series(families, "greenops_host_energy_joules_total")
    assert energy[("node-a", "1", "counter", "package")] == pytest.approx(30.0)  # kept
    assert energy[("node-a", "0", "counter", "package")] == pytest.approx(150.0)
    stale = [r for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and "intel-rapl:1" in stale[0].getMessage()


BURN = """
import sys, time
for line in sys.stdin:          # one burst of CPU per line, then wait for the next
    start = time.process_time()
    while time.process_time() - start < {seconds}:
        pass
    print("done", flush=True)
"""


@pytest.fixture
def burners() -> Iterator[list[subprocess.Popen[str]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BURN.format(seconds=s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for s in (0.2, 0.6)
    ]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def burn(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "done"


def test_gpu_processes_share_host_energy_and_it_joins_their_pods_and_inference(
    tmp_path: Path, burners: list[subprocess.Popen[str]]
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    light, heavy = (p.pid for p in burners)
    scenario = {
        "local_pids": True,  # the scenario's pids are these real processes
        "gpus": [
            {
                "model": "h100-sxm",
                "processes": [{"pid": pid, "pod": pod, "namespace": "ml", "container": "c"}],
                "schedule": [{"phase": "compute", "seconds": 600}],
            }
            for pid, pod in ((light, "light-0"), (heavy, "heavy-0"))
        ],
    }
    source = InferenceSource("srv", "vllm", "http://127.0.0.1:1/metrics", KINDS["vllm"])
    binding = InferenceBinding(source, frozenset({"0"}), InferenceAccount())
    fleet = Fleet(tree, scenario, [binding])

    def step() -> None:
        burn(burners)
        for zone, joules in (("intel-rapl:0", 300.0), ("intel-rapl:1", 100.0)):
            tree.advance(zone, joules)
        tree.advance("intel-rapl:0:2", 40.0)

    snap = fleet.run(step, step, step)
    host = snap.host
    assert host is not None
    by_pid: dict[tuple[int, str], float] = {}
    for key, joules in host.process_energy.items():
        by_pid[key.pid, key.zone] = joules
    package = {pid: by_pid[pid, "package"] for pid in (light, heavy)}
    # the first cycle is a baseline: three intervals of 400 J package and 40 J dram split
    process, other = (host.holder_energy[h, "package", "counter"] for h in ("process", "other"))
    assert process + other == pytest.approx(1200.0)  # every joule of the zone, no more
    assert sum(package.values()) == pytest.approx(process)
    # shares follow the CPU the kernel counted: 0.6 s against 0.2 s a burst, in 10 ms ticks
    assert 2.4 < package[heavy] / package[light] < 3.6
    assert host.holder_energy["process", "dram", "counter"] + host.holder_energy[
        "other", "dram", "counter"
    ] == pytest.approx(120.0)
    pods = {pod.pod: j for (pod, zone, _), j in host.pod_energy.items() if zone == "package"}
    assert pods == {"light-0": pytest.approx(package[light]), "heavy-0": package[heavy]}
    intensity = snap.intensity.grams_per_kwh if snap.intensity else 0.0
    grams = {pod.pod: g for (pod, _), g in host.pod_carbon_grams.items()}
    heavy_host = package[heavy] + by_pid[heavy, "dram"]
    assert grams["heavy-0"] == pytest.approx(heavy_host / KWH * 1.5 * intensity)
    # the inference source on GPU 0 (the light process's): its GPU energy plus that
    # process's host share; the heavy process on GPU 1 is not its
    gpu0 = next(d for d in snap.devices if d.info.index == 0)
    light_host = package[light] + by_pid[light, "dram"]
    assert binding.account.energy_joules == pytest.approx(gpu0.energy_joules_total + light_host)
    _, families = render(snap)
    pod_series = series(families, "greenops_host_pod_energy_joules_total")
    assert pod_series[("c", "node-a", "ml", "heavy-0", "counter", "package")] == pytest.approx(
        package[heavy]
    )


def test_the_estimate_is_labelled_everywhere_and_kept_out_of_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, burners: list[subprocess.Popen[str]]
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    root_only(monkeypatch, tree, *tree.paths)  # no counter readable: the estimate steps in
    pid = burners[1].pid
    scenario = {
        "local_pids": True,
        "gpus": [
            {
                "model": "h100-sxm",
                "processes": [{"pid": pid, "pod": "p-0", "namespace": "ml", "container": "c"}],
                "schedule": [{"phase": "compute", "seconds": 600}],
            }
        ],
    }
    source = InferenceSource("srv", "vllm", "http://127.0.0.1:1/metrics", KINDS["vllm"])
    binding = InferenceBinding(source, frozenset({"0"}), InferenceAccount())
    fleet = Fleet(tree, scenario, [binding], estimate=True, cpu_tdp_watts=250.0)
    snap = fleet.run(lambda: burn(burners), lambda: burn(burners))
    _, families = render(snap)
    energy = series(families, "greenops_host_energy_joules_total")
    # two series: the CPU packages and the DRAM, both estimated
    assert set(energy) == {("node-a", "", "estimate", k) for k in ("package", "dram")}
    assert all(joules > 0 for joules in energy.values())
    for name in (
        "greenops_host_power_watts",
        "greenops_host_holder_energy_joules_total",
        "greenops_host_process_energy_joules_total",
        "greenops_host_pod_energy_joules_total",
        "greenops_host_carbon_grams_total",
        "greenops_host_pod_carbon_grams_total",
    ):
        found = families[name.removesuffix("_total")].samples
        assert found and all(s.labels["source"] == "estimate" for s in found), name
    # an estimate never enters joules per request or SCI: the source has its GPU energy only
    gpu0 = snap.devices[0]
    assert binding.account.energy_joules == pytest.approx(gpu0.energy_joules_total)
    assert "greenops_host_zone_up" not in families  # no counter zone to be up or down
