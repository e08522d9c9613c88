"""The real backends/nvml.py against recorded H100 values served by a stand-in pynvml."""

from __future__ import annotations

import itertools
import math

import pynvml as real
import pytest

from fakenvml import FakeNvml, load_trace
from greenops_exporter.backends.base import (
    BackendUnavailable,
    Capability,
    DeviceReadError,
    ProcessUtilizationPolicy,
    ReadPlan,
)
from greenops_exporter.backends.nvml import NvmlBackend, mig_profile_from_name

# a sample 5 s into the bf16 matmul phase
COMPUTE_ROW = [s["phase"] for s in load_trace()].index("compute_matmul_bf16") + 50


@pytest.fixture
def fake() -> FakeNvml:
    return FakeNvml()


def opened(fake: FakeNvml) -> NvmlBackend:
    backend = NvmlBackend(fake, clock=fake.clock)
    backend.open()
    return backend


def test_discovery_matches_the_probe(fake: FakeNvml) -> None:
    backend = NvmlBackend(fake, clock=fake.clock)
    [info] = backend.open()
    static = fake.probe["static"]
    assert info.name == static["name"] == "NVIDIA H100 80GB HBM3"
    assert info.uuid == static["uuid"]
    assert info.pci_bus_id == static["pci"]["busId"]
    assert info.memory_total_bytes == static["memory"]["total"]
    assert info.power_limit_watts == pytest.approx(700.0)
    assert info.architecture == "hopper"
    assert info.mig_enabled is False
    assert info.driver_version == "580.159.04"
    # NVLink answered NOT_SUPPORTED on every link of the recorded board: absent, not an error
    assert not info.supports(Capability.NVLINK_COUNTERS)
    assert not info.supports(Capability.MIG)
    for cap in (
        Capability.ENERGY_COUNTER,
        Capability.POWER_INSTANT,
        Capability.PCIE_COUNTERS,
        Capability.GPM,
        Capability.PROCESS_UTILIZATION,
    ):
        assert info.supports(cap), cap


def test_a_read_carries_the_recorded_values(fake: FakeNvml) -> None:
    backend = opened(fake)
    fake.cursor = COMPUTE_ROW - 1
    backend.read(0, ReadPlan())  # primes GPM (its values are differences of two samples)
    fake.cursor = COMPUTE_ROW
    r = backend.read(0, ReadPlan())
    s = fake.trace[COMPUTE_ROW]
    assert s["phase"] == "compute_matmul_bf16"
    assert r.timestamp == s["t"]
    assert r.power_watts == pytest.approx(s["power_mw"] / 1000)
    # instant power is the newest driver sample (drawn every 20 ms from the recording's
    # instant power, interpolated): within the step between two 10 Hz rows of this phase
    assert r.power_instant_watts == pytest.approx(
        s["fields"]["power_instant"]["value"] / 1000, rel=0.05
    )
    assert len(r.power_samples) > 0
    assert all(b[0] - a[0] == pytest.approx(0.02) for a, b in itertools.pairwise(r.power_samples))
    assert r.energy_counter_joules == pytest.approx(s["energy_mj"] / 1000)
    assert r.utilization_gpu == pytest.approx(s["util_gpu"] / 100)
    assert r.utilization_memory == pytest.approx(s["util_mem"] / 100)
    assert r.memory_used_bytes == s["mem_used"]
    assert r.memory_total_bytes == s["mem_total"]
    assert r.temperature_celsius == s["temp_c"]
    assert r.sm_clock_hertz == pytest.approx(s["sm_clock_mhz"] * 1e6)
    assert r.memory_clock_hertz == pytest.approx(s["mem_clock_mhz"] * 1e6)
    assert r.pstate == s["pstate"]
    assert r.clock_event_reasons == s["clock_event_reasons"] == 4  # SW power cap
    # with GPM the 32-bit PCIe byte counters are not read: GPM gives the rates
    assert r.pcie_tx_bytes is None and r.pcie_rx_bytes is None
    assert r.nvlink_tx_bytes is None
    assert r.gpm is not None
    assert r.gpm.sm_active == pytest.approx(s["gpm"]["sm_util"] / 100)
    assert r.gpm.tensor_active == pytest.approx(s["gpm"]["any_tensor_util"] / 100)
    assert r.gpm.dram_active == pytest.approx(s["gpm"]["dram_bw_util"] / 100)
    assert r.gpm.pcie_rx_bytes_per_second == pytest.approx(s["gpm"]["pcie_rx_mib_s"] * 2**20)
    assert [(p.pid, p.used_memory_bytes) for p in r.processes] == [
        (p["pid"], p["used_mem"]) for p in s["procs"]
    ]
    assert r.failed_calls == ()


def test_first_read_has_no_gpm_yet(fake: FakeNvml) -> None:
    backend = opened(fake)
    assert backend.read(0, ReadPlan()).gpm is None
    fake.cursor = 1
    assert backend.read(0, ReadPlan()).gpm is not None


def test_energy_counter_is_read_only_when_the_plan_asks(fake: FakeNvml) -> None:
    backend = opened(fake)
    before = fake.calls["nvmlDeviceGetTotalEnergyConsumption"]
    r = backend.read(0, ReadPlan(energy_counter=False))
    assert r.energy_counter_joules is None
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == before
    assert backend.read(0, ReadPlan(energy_counter=True)).energy_counter_joules is not None
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == before + 1


def test_process_utilization_only_while_a_gpu_is_shared(fake: FakeNvml) -> None:
    backend = opened(fake)
    fake.cursor = COMPUTE_ROW
    base = fake.calls["nvmlDeviceGetProcessUtilization"]
    r = backend.read(0, ReadPlan())  # one process: the 2.5 ms call is skipped
    assert len(r.processes) == 1
    assert fake.calls["nvmlDeviceGetProcessUtilization"] == base
    assert r.processes[0].sm_utilization is None

    # the same sample with a second process sharing the GPU
    shared = dict(fake.trace[COMPUTE_ROW])
    shared["procs"] = [*shared["procs"], {"pid": 999, "used_mem": 1 << 30}]
    ts = shared["proc_util"][0]["ts"]
    shared["proc_util"] = [
        {"pid": shared["procs"][0]["pid"], "sm": 70, "mem": 20, "ts": ts},
        {"pid": 999, "sm": 25, "mem": 5, "ts": ts},
    ]
    fake.trace = [*fake.trace, shared]
    fake.cursor = len(fake.trace) - 1
    r = backend.read(0, ReadPlan())
    assert fake.calls["nvmlDeviceGetProcessUtilization"] == base + 1
    assert {p.pid: p.sm_utilization for p in r.processes} == {
        shared["procs"][0]["pid"]: pytest.approx(0.70),
        999: pytest.approx(0.25),
    }
    # no newer sample (NOT_FOUND): the last values stay, the call is not an error
    r = backend.read(0, ReadPlan())
    assert {p.pid: p.sm_utilization for p in r.processes}[999] == pytest.approx(0.25)
    assert r.failed_calls == ()

    never = backend.read(0, ReadPlan(process_utilization=ProcessUtilizationPolicy.NEVER))
    assert all(p.sm_utilization is None for p in never.processes)


def test_gpm_nan_drops_only_that_value(fake: FakeNvml) -> None:
    backend = opened(fake)
    fake.cursor = COMPUTE_ROW - 1
    backend.read(0, ReadPlan())
    fake.cursor = COMPUTE_ROW
    fake.nan_gpm = {"dram_bw_util"}
    r = backend.read(0, ReadPlan())
    assert r.gpm is not None
    assert r.gpm.dram_active is None
    assert r.gpm.sm_active == pytest.approx(fake.trace[COMPUTE_ROW]["gpm"]["sm_util"] / 100)


def test_recorded_nan_is_dropped_too(fake: FakeNvml) -> None:
    nan_rows = [
        i
        for i, s in enumerate(fake.trace)
        if i > 0
        and isinstance(s["gpm"].get("dram_bw_util"), float)
        and math.isnan(s["gpm"]["dram_bw_util"])
    ]
    assert nan_rows, "the recording holds NaN dram_bw_util samples"
    backend = opened(fake)
    fake.cursor = nan_rows[0] - 1
    backend.read(0, ReadPlan())
    fake.cursor = nan_rows[0]
    r = backend.read(0, ReadPlan())
    assert r.gpm is not None and r.gpm.dram_active is None and r.gpm.sm_active is not None


def test_library_missing_is_backend_unavailable() -> None:
    fake = FakeNvml()
    fake.library_missing = True
    with pytest.raises(BackendUnavailable, match="NVML could not start"):
        NvmlBackend(fake).open()


def test_lost_gpu_raises_then_recovers(fake: FakeNvml) -> None:
    backend = opened(fake)
    fake.lost.add(0)
    with pytest.raises(DeviceReadError) as err:
        backend.read(0, ReadPlan())
    assert err.value.call == "nvmlDeviceGetMemoryInfo"
    with pytest.raises(DeviceReadError) as err:
        backend.read(0, ReadPlan())
    assert err.value.call == "nvmlDeviceGetHandleByUUID"
    fake.lost.clear()
    assert backend.read(0, ReadPlan()).power_watts is not None


def test_driver_unloaded_then_back(fake: FakeNvml) -> None:
    backend = opened(fake)
    fake.initialized = False  # the driver went away under us
    with pytest.raises(DeviceReadError):
        backend.read(0, ReadPlan())
    inits = fake.calls["nvmlInit"]
    r = backend.read(0, ReadPlan())  # re-initialises by itself
    assert fake.calls["nvmlInit"] == inits + 1
    assert r.memory_used_bytes is not None


def test_mig_devices_are_listed(fake: FakeNvml) -> None:
    gib = 1 << 30
    fake.mig[0] = [
        {
            "gi": 1,
            "ci": 0,
            "uuid": "MIG-a",
            "profile": "3g.40gb",
            "used": 5 * gib,
            "total": 40 * gib,
        },
        {"gi": 2, "ci": 0, "uuid": "MIG-b", "profile": "1g.10gb", "used": 0, "total": 10 * gib},
    ]
    backend = NvmlBackend(fake, clock=fake.clock)
    [info] = backend.open()
    assert info.mig_enabled and info.supports(Capability.MIG)
    r = backend.read(0, ReadPlan())
    assert [(m.gpu_instance_id, m.profile, m.memory_used_bytes) for m in r.mig_devices] == [
        (1, "3g.40gb", 5 * gib),
        (2, "1g.10gb", 0),
    ]


def test_mig_profile_names() -> None:
    assert mig_profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb") == "1g.10gb"
    assert mig_profile_from_name("NVIDIA A100-SXM4-40GB MIG 3g.20gb") == "3g.20gb"


def test_the_cost_model_charges_each_call_its_measured_cpu_once() -> None:
    """With the H100 table loaded, a call costs at least what it took on the real GPU (the
    energy counter 4.0 ms, field values their fields' sum plus the call's), charged once
    when the outermost call returns; cheap getters (0.0012 ms each on the H100) are charged
    their own cost, not a dear call's."""
    import time

    fake = FakeNvml()
    fake.load_costs()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    started = time.thread_time()
    fake.nvmlDeviceGetTotalEnergyConsumption(handle)
    assert time.thread_time() - started >= 0.0040
    started = time.thread_time()
    fake.nvmlDeviceGetFieldValues(handle, [real.NVML_FI_DEV_POWER_INSTANT])
    assert time.thread_time() - started >= (0.04 + 0.003) / 1000  # field + the call's default
    started = time.thread_time()
    for _ in range(50):
        fake.nvmlDeviceGetTemperature(handle, real.NVML_TEMPERATURE_GPU)
    cheap = time.thread_time() - started
    assert cheap < 50 * 0.0040 / 4  # owed 0.06 ms in all; a quarter of one energy read each
