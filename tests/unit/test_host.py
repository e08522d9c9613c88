"""Host energy from a powercap tree in the kernel's layout: zones found once (Intel with
package and dram sub-zones, AMD packages), counters that wrap, a root-only counter, a read
that fails mid-run; and the split of an interval's energy among real processes by the CPU
time the kernel counted for them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenops_exporter.analysis.host import (
    ESTIMATE_ID,
    HostMeter,
    HostSample,
    counter_increase_joules,
    cpu_increase,
    estimate_joules,
    split_by_cpu_time,
)
from greenops_exporter.sources import rapl
from greenops_exporter.sources.cputime import CpuSample, sample_cpu
from greenops_exporter.sources.readings import ProcessCpu
from powercap import AMD_2S, INTEL_2S, PACKAGE_RANGE_UJ, FakePowercap


def labels(discovery: rapl.Discovery) -> dict[str, tuple[str, str]]:
    return {z.id: (z.zone, z.package) for z in discovery.zones}


def test_intel_zones_nested_and_flat_are_found_once(tmp_path: Path) -> None:
    FakePowercap(tmp_path, INTEL_2S)
    found = rapl.discover(tmp_path)
    assert found.problem == "" and found.unreadable == ()
    assert labels(found) == {
        "intel-rapl:0": ("package", "0"),
        "intel-rapl:0:0": ("core", "0"),
        "intel-rapl:0:1": ("uncore", "0"),
        "intel-rapl:0:2": ("dram", "0"),
        "intel-rapl:1": ("package", "1"),
        "intel-rapl:1:0": ("dram", "1"),
        "intel-rapl:2": ("psys", ""),
    }  # intel-rapl-mmio:0 (the same package 0 counter again) and the control type skipped
    assert found.zones[0].max_energy_range_uj == PACKAGE_RANGE_UJ


def test_amd_packages_through_the_same_interface(tmp_path: Path) -> None:
    FakePowercap(tmp_path, AMD_2S)
    found = rapl.discover(tmp_path)
    assert labels(found) == {
        "intel-rapl:0": ("package", "0"),
        "intel-rapl:0:0": ("core", "0"),
        "intel-rapl:1": ("package", "1"),
        "intel-rapl:1:0": ("core", "1"),
    }


def test_no_powercap_and_no_zones_say_why(tmp_path: Path) -> None:
    assert "no powercap sysfs" in rapl.discover(tmp_path / "absent").problem
    assert "no intel-rapl zones" in rapl.discover(tmp_path).problem


def test_a_root_only_counter_is_reported_and_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    real = rapl.read_energy_uj

    def root_only(path: Path) -> int:
        if path == tree.paths["intel-rapl:0:2"]:
            raise PermissionError(13, "Permission denied", str(path / "energy_uj"))
        return real(path)

    monkeypatch.setattr(rapl, "read_energy_uj", root_only)
    found = rapl.discover(tmp_path)
    assert "intel-rapl:0:2" not in labels(found)
    (bad,) = found.unreadable
    assert (bad.id, bad.zone, bad.package) == ("intel-rapl:0:2", "dram", "0")
    assert "CVE-2020-8694" in bad.reason and "permission denied" in bad.reason


def test_counters_wrap_and_never_go_negative(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, {"intel-rapl:0": "package-0"}, PACKAGE_RANGE_UJ - 50_000_000)
    zones = rapl.discover(tmp_path).zones
    meter = HostMeter(zones)
    meter.update(HostSample(0.0, rapl.read_zones(zones)))
    tree.advance("intel-rapl:0", 200.0)  # 50 J to the top of the range, 150 J past it
    assert tree.read("intel-rapl:0") < PACKAGE_RANGE_UJ - 50_000_000  # it did wrap
    cycle = meter.update(HostSample(2.0, rapl.read_zones(zones)))
    assert cycle.joules["intel-rapl:0"] == pytest.approx(200.0)
    assert cycle.watts["intel-rapl:0"] == pytest.approx(100.0)
    assert counter_increase_joules(10, 5, 100) == pytest.approx(95e-6)


def test_a_failed_read_marks_the_zone_and_counts_on_from_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path, {"intel-rapl:0": "package-0", "intel-rapl:0:0": "dram"})
    zones = rapl.discover(tmp_path).zones
    meter = HostMeter(zones)
    meter.update(HostSample(0.0, rapl.read_zones(zones)))
    real = rapl.read_energy_uj

    def gone(path: Path) -> int:
        if path == tree.paths["intel-rapl:0:0"]:
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(rapl, "read_energy_uj", gone)
    tree.advance("intel-rapl:0", 10.0)
    tree.advance("intel-rapl:0:0", 10.0)
    cycle = meter.update(HostSample(1.0, rapl.read_zones(zones)))
    assert cycle.failed == {"intel-rapl:0:0": "Input/output error"}
    assert cycle.joules == {"intel-rapl:0": pytest.approx(10.0)}  # the other zone carries on
    monkeypatch.setattr(rapl, "read_energy_uj", real)
    meter.update(HostSample(2.0, rapl.read_zones(zones)))  # a new baseline, the gap unguessed
    tree.advance("intel-rapl:0:0", 3.0)
    cycle = meter.update(HostSample(3.0, rapl.read_zones(zones)))
    assert cycle.joules["intel-rapl:0:0"] == pytest.approx(3.0)
    assert meter.totals["intel-rapl:0:0"] == pytest.approx(3.0)


def test_split_adds_up_to_the_zone() -> None:
    shares, other = split_by_cpu_time(100.0, {1: 2.0, 2: 1.0}, busy_seconds=4.0)
    assert shares == {1: 50.0, 2: 25.0} and other == 25.0
    # the processes' time read a moment after the machine's may exceed it: no negative rest
    shares, other = split_by_cpu_time(90.0, {1: 2.0, 2: 1.0}, busy_seconds=2.5)
    assert shares == {1: 60.0, 2: 30.0} and other == 0.0
    assert split_by_cpu_time(0.0, {1: 1.0}, 1.0) == ({1: 0.0}, 0.0)


def test_estimate_is_codecarbons_cubic_load_model() -> None:
    # load 4/16 = 25 %: 200 W x (0.1 + 0.9 x 0.25^3) x 2 s (tests/unit/test_codecarbon_models.py
    # checks the model against CodeCarbon's own code)
    expected = 200.0 * (0.1 + 0.9 * 0.25**3) * 2.0
    assert estimate_joules(200.0, busy_seconds=4.0, total_seconds=16.0, seconds=2.0) == expected
    meter = HostMeter((), estimate_tdp_watts=200.0)
    meter.update(HostSample(0.0, (), CpuSample(10.0, 100.0)))
    cycle = meter.update(HostSample(2.0, (), CpuSample(14.0, 116.0)))
    assert cycle.joules == {ESTIMATE_ID: expected}
    assert cycle.other == {"package": expected}


BURN = """
import sys, time
sys.stdin.readline()                       # wait until the first sample is taken
start = time.process_time()
while time.process_time() - start < {seconds}:
    pass
print("done", flush=True)
sys.stdin.readline()                       # stay alive for the second sample
"""


def test_two_real_processes_share_by_their_measured_cpu_time(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, INTEL_2S)
    zones = rapl.discover(tmp_path).zones
    burners = [
        subprocess.Popen(
            [sys.executable, "-c", BURN.format(seconds=s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for s in (0.3, 0.9)
    ]
    pids = [p.pid for p in burners]
    try:
        time.sleep(0.5)  # let the interpreters start: their start-up CPU is not measured
        meter = HostMeter(zones)
        before = sample_cpu(pids)
        meter.update(HostSample(0.0, rapl.read_zones(zones), before), pids)
        for p in burners:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in burners:
            assert p.stdout is not None and p.stdout.readline().strip() == "done"
        tree.advance("intel-rapl:0", 600.0)
        tree.advance("intel-rapl:1", 400.0)
        tree.advance("intel-rapl:0:2", 60.0)
        tree.advance("intel-rapl:1:0", 40.0)
        tree.advance("intel-rapl:0:0", 300.0)  # core: inside package, never split
        after = sample_cpu(pids)
        cycle = meter.update(HostSample(10.0, rapl.read_zones(zones), after), pids)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert set(cycle.shares) == {"package", "dram"}
    cpu = {pid: after.processes[pid].seconds - before.processes[pid].seconds for pid in pids}
    busy = after.busy_seconds - before.busy_seconds
    for kind, joules in (("package", 1000.0), ("dram", 100.0)):
        shares, other = cycle.shares[kind], cycle.other[kind]
        assert sum(shares.values()) + other == pytest.approx(joules)  # the zone, exactly
        assert other >= 0
        for pid in pids:
            assert shares[pid] == pytest.approx(joules * cpu[pid] / max(busy, sum(cpu.values())))
        # /proc counts CPU in 10 ms ticks: 0.9 +- 0.02 over 0.3 +- 0.02 s lies in 2.75..3.29
        assert 2.7 < shares[pids[1]] / shares[pids[0]] < 3.3
    assert cycle.process_joules(pids[0]) == pytest.approx(
        cycle.shares["package"][pids[0]] + cycle.shares["dram"][pids[0]]
    )


def test_a_reused_pid_is_a_new_process_with_no_cpu_time_carried_over() -> None:
    """The kernel hands a dead process's pid to a new one: its start time differs, so its
    CPU seconds are not an increase over the old process's (which would credit it with
    the old one's whole lifetime, or a negative clamped to 0)."""
    before = {10: ProcessCpu(create_time=1000.0, seconds=5.0), 11: ProcessCpu(900.0, 50.0)}
    after = {10: ProcessCpu(create_time=1000.0, seconds=7.5), 11: ProcessCpu(1200.0, 80.0)}
    assert cpu_increase(before, after) == {10: 2.5}
