"""The dcgm backend against real dcgm-exporter pages (a live cluster's, and the ones quoted in
dcgm-exporter's issues) served by a real HTTP server on 127.0.0.1: devices, identity, units,
pods, capabilities, MIG, and the page's quirks and faults."""

from __future__ import annotations

import logging
import math
import socket
import time

import pytest

from dcgmpages import FIXTURES, MIB, PageServer, labels, render
from greenops_exporter.backends.base import (
    BackendUnavailable,
    Capability,
    DeviceReadError,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.backends.dcgm_page import (
    SYNTHETIC_PID_BASE,
    compute_slices,
    device_info,
    parse_page,
    reading,
    synthetic_pid,
)

RTX = (FIXTURES / "rtx4000ada_k8s.txt").read_text()
RTX_UUID = "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c"
RTX_POD = "cuda-75454ffb9f-8ljq7"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def read_page(text: str, plan: ReadPlan | None = None) -> list[Reading]:
    return [reading(gpu, 1.0, plan or ReadPlan()) for gpu in parse_page(text).values()]


def two_gpus(power: tuple[float, float] = (100.0, 200.0), gpus: tuple[int, ...] = (0, 1)) -> str:
    return render(
        ("DCGM_FI_DEV_POWER_USAGE", labels(gpu=g, uuid=f"GPU-{g}"), power[g]) for g in gpus
    )


def test_the_live_cluster_page() -> None:
    with PageServer(RTX) as server:
        backend = DcgmBackend(server.url, 2.0, clock=lambda: 50.0)
        [info] = backend.open()
        r = backend.read(0, ReadPlan())
    assert (info.index, info.uuid, info.name) == (0, RTX_UUID, "NVIDIA RTX 4000 Ada Generation")
    assert (info.pci_bus_id, info.driver_version, info.architecture) == (
        "00000000:00:02.0",
        "580.95.05",
        "ada",
    )
    assert info.memory_total_bytes == (1 + 20015 + 457) * MIB  # used + free + reserved
    assert info.mig_enabled is False and info.power_limit_watts is None
    assert info.capabilities == {
        Capability.POWER_AVERAGE,
        Capability.ENERGY_COUNTER,
        Capability.UTILIZATION,
        Capability.MEMORY,
        Capability.TEMPERATURE,
        Capability.CLOCKS,
        Capability.GPM,
        Capability.PROCESSES,
    }
    assert r.timestamp == 50.0
    assert r.power_watts == pytest.approx(40.979)
    assert r.power_instant_watts is None
    assert r.energy_counter_joules == pytest.approx(455497.156)  # mJ -> J
    assert (r.utilization_gpu, r.utilization_memory) == (0.0, 0.0)
    assert r.memory_used_bytes == (1 + 457) * MIB  # like NVML's used: reservation included
    assert r.memory_total_bytes == info.memory_total_bytes
    assert r.temperature_celsius == 48
    assert (r.sm_clock_hertz, r.memory_clock_hertz) == (2310e6, 9001e6)
    assert r.pstate is None and r.clock_event_reasons is None
    assert r.pcie_tx_bytes is None  # rates only: the traffic meter integrates them
    g = r.gpm
    assert g is not None
    assert g.graphics_active == pytest.approx(0.004656)
    assert (g.tensor_active, g.dram_active) == (0.0, pytest.approx(0.003074))
    assert g.pcie_tx_bytes_per_second == 78398480  # bytes per second, despite the name
    assert g.pcie_rx_bytes_per_second == 45987793
    assert g.sm_active is None  # not in the GPU Operator's default field list
    [p] = r.processes
    assert (p.namespace, p.pod, p.container, p.command) == ("default", RTX_POD, "cuda", "cuda")
    assert p.used_memory_bytes == 1 * MIB
    assert p.gpu_instance_id is None and p.sm_utilization is None
    assert p.pid == synthetic_pid((None, "default", RTX_POD, "cuda")) >= SYNTHETIC_PID_BASE
    assert r.mig_devices == ()


def test_synthetic_pids_are_stable_distinct_and_never_real() -> None:
    a = synthetic_pid((None, "ns", "pod-a", "c"))
    assert a == synthetic_pid((None, "ns", "pod-a", "c"))  # no per-process hash seed
    assert a != synthetic_pid((None, "ns", "pod-b", "c"))
    assert a != synthetic_pid((3, "ns", "pod-a", "c"))  # one pod on two instances: two
    assert SYNTHETIC_PID_BASE == 2**22  # Linux's PID_MAX_LIMIT: no real PID reaches it
    assert SYNTHETIC_PID_BASE <= a < SYNTHETIC_PID_BASE + 2**30


def test_h100_mig_with_pods_and_no_framebuffer_fields_512() -> None:
    [r] = read_page(fixture("h100_mig_pods_512.txt"))
    [gpu] = parse_page(fixture("h100_mig_pods_512.txt")).values()
    assert gpu.profiles == {7: "1g.10gb", 8: "1g.10gb", 9: "1g.10gb"}
    assert [(m.gpu_instance_id, m.profile, m.memory_used_bytes) for m in r.mig_devices] == [
        (7, "1g.10gb", None),
        (8, "1g.10gb", None),
        (9, "1g.10gb", None),
    ]
    assert [m.sm_active for m in r.mig_devices] == [0.0, 0.0, 0.0]  # engine activity
    pods = sorted((p.gpu_instance_id, p.pod[:14], p.namespace) for p in r.processes)
    assert pods == [
        (7, "text-embedding", "model-playground-stg"),
        (9, "tts-predictor-", "model-playground-stg"),
    ]
    assert all(p.used_memory_bytes is None for p in r.processes)  # unknown, not zero
    # no DCGM_FI_DEV_GPU_UTIL under MIG: the engine activity of the whole GPU stands in
    assert r.utilization_gpu == 0.0
    assert r.memory_used_bytes is None
    assert r.memory_total_bytes == 85520809984  # the model's, from the table
    info = device_info(gpu)
    assert info.mig_enabled and info.supports(Capability.MIG)
    assert not info.supports(Capability.MEMORY)
    assert info.supports(Capability.PROCESSES) and info.architecture == "hopper"


def test_a30_mig_gpu_wide_fields_repeated_per_instance_317() -> None:
    pages = parse_page(fixture("a30_mig_317.txt"))
    assert [(g.index, g.uuid[:12]) for g in pages.values()] == [
        (0, "GPU-265c9814"),
        (1, "GPU-2d20791a"),
    ]
    first, second = read_page(fixture("a30_mig_317.txt"))
    # the same quantity sampled a moment apart: always the lowest instance's series
    assert first.power_watts == pytest.approx(52.636)
    assert second.power_watts == pytest.approx(56.121)
    assert first.temperature_celsius == 35
    assert [m.gpu_instance_id for m in first.mig_devices] == [3, 4, 5, 6]
    assert all(m.memory_total_bytes is None for m in first.mig_devices)  # free alone
    assert first.processes == ()
    info = device_info(pages["GPU-265c9814-6156-355b-e589-ff2064894f16"])
    assert info.architecture == "ampere" and info.pci_bus_id == ""  # older pages lack it
    assert not info.supports(Capability.PROCESSES)  # Kubernetes mapping off: no pod labels


def test_odd_profile_name_713() -> None:
    [gpu] = parse_page(fixture("a100_7g79gb_713.txt")).values()
    [r] = read_page(fixture("a100_7g79gb_713.txt"))
    assert gpu.profiles == {0: "7g.79gb"}
    assert [m.profile for m in r.mig_devices] == ["7g.79gb"]  # kept as DCGM names it
    assert compute_slices("7g.79gb") == 7 and compute_slices("1g.10gb") == 1
    assert r.sm_clock_hertz == 1410e6
    assert r.processes == ()  # pod labels present but empty: nobody holds it


def test_mixed_node_without_profiling_fields_736() -> None:
    gpus = parse_page(fixture("mixed_mig_736.txt"))
    assert [g.index for g in gpus.values()] == [0, 1, 2]  # by the gpu label, not page order
    a30, rtx, other = read_page(fixture("mixed_mig_736.txt"))
    assert rtx.gpm is None  # no DCGM_FI_PROF_* at all (#395, #736): basic signals decide
    assert rtx.memory_used_bytes is None and rtx.temperature_celsius == 44
    by_pod = {p.pod[-5:]: p for p in a30.processes}
    assert by_pod["2w5b2"].gpu_instance_id == 6
    assert by_pod["2w5b2"].used_memory_bytes == 3744 * MIB
    assert by_pod["wwk9g"].gpu_instance_id == 3 and by_pod["wwk9g"].used_memory_bytes is None
    assert [p.pod[-5:] for p in other.processes] == ["95xcf"]
    assert not device_info(gpus["GPU-fc60126e-514d-3522-2828-c5daa8e99d85"]).supports(
        Capability.GPM
    )


def test_nan_values_are_none() -> None:
    page = RTX.replace("} 48\n", "} NaN\n").replace("} 0.004656\n", "} NaN\n")
    [r] = read_page(page)
    assert r.temperature_celsius is None
    assert r.gpm is not None and r.gpm.graphics_active is None
    assert r.gpm.dram_active == pytest.approx(0.003074)  # the rest stays


def test_mig_activity_is_weighted_by_each_instance_share_of_the_gpu() -> None:
    series = [
        ("DCGM_FI_PROF_SM_ACTIVE", labels(instance=(1, "3g.40gb")), 1.0),
        ("DCGM_FI_PROF_SM_ACTIVE", labels(instance=(2, "1g.10gb")), 0.0),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", labels(instance=(1, "3g.40gb")), 1000),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", labels(instance=(2, "1g.10gb")), 500),
    ]
    [r] = read_page(render(series))
    assert r.gpm is not None
    assert r.gpm.sm_active == pytest.approx(3 / 7)  # 3 of 7 slices busy, the rest idle
    assert r.gpm.pcie_rx_bytes_per_second == 1500  # rates add up
    assert [m.sm_active for m in r.mig_devices] == [1.0, 0.0]


def test_the_plan_switches_off_what_the_collectors_do_not_want() -> None:
    [r] = read_page(RTX, ReadPlan(gpm=False, processes=False, mig=False))
    assert r.gpm is None and r.processes == ()
    [r] = read_page(RTX, ReadPlan(energy_counter=False))
    assert r.energy_counter_joules is not None  # free on a page: kept whatever the plan


def test_one_request_per_cycle_for_all_gpus() -> None:
    with PageServer(two_gpus()) as server:
        backend = DcgmBackend(server.url, 2.0)
        infos = backend.open()
        assert [i.uuid for i in infos] == ["GPU-0", "GPU-1"]
        opened = server.requests
        for cycle in range(1, 4):
            assert backend.read(0, ReadPlan()).power_watts == 100.0
            assert backend.read(1, ReadPlan()).power_watts == 200.0
            assert server.requests == opened + cycle


def test_an_unchanged_page_is_no_new_interval() -> None:
    now = [10.0]
    with PageServer(two_gpus()) as server:
        backend = DcgmBackend(server.url, 2.0, clock=lambda: now[0])
        backend.open()
        first = backend.read(0, ReadPlan())
        now[0] = 11.0
        again = backend.read(0, ReadPlan())  # dcgm-exporter served its cache
        assert again is first and again.timestamp == 10.0
        server.page = two_gpus(power=(150.0, 200.0))
        now[0] = 12.0
        changed = backend.read(0, ReadPlan())
        assert (changed.timestamp, changed.power_watts) == (12.0, 150.0)


def test_a_gpu_vanishing_from_the_page_is_stale_then_back() -> None:
    with PageServer(two_gpus()) as server:
        backend = DcgmBackend(server.url, 2.0)
        backend.open()
        server.page = two_gpus(gpus=(0,))
        assert backend.read(0, ReadPlan()).power_watts == 100.0
        with pytest.raises(DeviceReadError) as err:
            backend.read(1, ReadPlan())
        assert err.value.call == "missing" and "GPU-1" in str(err.value)
        assert backend.health().up  # the page itself is fine
        server.page = two_gpus()
        assert backend.read(0, ReadPlan()).power_watts == 100.0
        assert backend.read(1, ReadPlan()).power_watts == 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_backend_unavailable_at_open() -> None:
    backend = DcgmBackend(f"http://127.0.0.1:{free_port()}/metrics", 0.5)
    with pytest.raises(BackendUnavailable, match=r"dcgm-exporter at http://127\.0\.0\.1"):
        backend.open()


@pytest.mark.parametrize(
    ("fault", "operation", "message"),
    [
        ("status", "fetch", "HTTP 500"),
        ("slow", "fetch", "timed out"),
        ("garbage", "parse", "not a metrics page"),
        ("not-dcgm", "parse", "none named DCGM_FI_"),
    ],
)
def test_faults_mark_the_backend_down_count_log_once_and_recover(
    fault: str, operation: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenops_exporter.backends.dcgm")
    with PageServer(two_gpus()) as server:
        backend = DcgmBackend(server.url, 0.3)
        backend.open()
        backend.read(0, ReadPlan())
        if fault == "status":
            server.status = 500
        elif fault == "slow":
            server.delay = 1.0
        elif fault == "garbage":
            server.page = "<html><body>502 Bad Gateway</body></html>\n"
        else:
            server.page = "# TYPE up gauge\nup 1\n"
        for cycle in range(1, 4):
            started = time.monotonic()
            for index in (0, 1):  # both GPUs fail on the one failed fetch
                with pytest.raises(DeviceReadError) as err:
                    backend.read(index, ReadPlan())
                assert err.value.call == operation and message in str(err.value)
            assert time.monotonic() - started < 0.9  # within the fetch deadline (+ slack)
            assert backend.health().up is False
            assert backend.health().errors == {operation: cycle}  # once per cycle
        server.status, server.delay, server.page = 200, 0.0, two_gpus()
        assert backend.read(0, ReadPlan()).power_watts == 100.0
        assert backend.health().up is True
        assert backend.health().errors == {operation: 3}  # a counter: kept
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is down" in line for line in lines) == 1
    assert sum("answers again" in line for line in lines) == 1


def test_capabilities_follow_the_page(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="greenops_exporter.backends.dcgm")
    without = "".join(line + "\n" for line in RTX.splitlines() if "DCGM_FI_PROF_" not in line)
    with PageServer(without) as server:
        backend = DcgmBackend(server.url, 2.0)
        [info] = backend.open()
        assert not info.supports(Capability.GPM)
        assert backend.read(0, ReadPlan()).gpm is None
        server.page = RTX  # profiling module loaded later, or the field list extended
        assert backend.read(0, ReadPlan()).gpm is not None
        assert backend.device_info(0).supports(Capability.GPM)
    assert any("+gpm -none" in r.getMessage() for r in caplog.records)


def test_pages_are_never_fetched_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with PageServer(RTX) as server:
        [info] = DcgmBackend(server.url, 2.0).open()
    assert info.uuid == RTX_UUID


def test_nan_page_values_do_not_break_change_detection() -> None:
    page = RTX.replace("} 48\n", "} NaN\n")
    with PageServer(page) as server:
        backend = DcgmBackend(server.url, 2.0, clock=time.monotonic)
        backend.open()
        first = backend.read(0, ReadPlan())
        assert backend.read(0, ReadPlan()) is first  # NaN != NaN must not look like news
        assert first.temperature_celsius is None and not math.isnan(first.power_watts or 0)


def test_check_says_which_values_the_page_does_not_have(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`check --backend dcgm` on the live cluster's page: what the page lacks (instant power,
    P-state, SM activity) reads `not on this page`, never Python's None or a bare `- %`; the
    PCIe rates the page has are shown as rates."""
    from greenops_exporter.cli import main

    with PageServer(RTX) as server:
        assert main(["check", "--backend", "dcgm", "--dcgm-url", server.url]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "- %" not in out
    rows = dict(
        (line[2:25].strip(), line[25:]) for line in out.splitlines() if line.startswith("  ")
    )
    assert rows["power (instant)"] == "not on this page"
    assert rows["P-state"] == "not on this page"
    assert rows["SM active / occupancy"] == "not on this page"
    assert rows["tensor / DRAM active"] == "0.0 % / 0.3 %"  # on the page: its values
    assert rows["PCIe tx/rx bytes"].endswith(" per second")
    tx, rx = rows["PCIe tx/rx bytes"].removesuffix(" per second").split(" / ")
    assert int(tx) > 0 and int(rx) > 0


def test_check_against_an_unreachable_backend_says_why_and_promises_no_retry(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`check` opens the backend once: stdout gives the reason (not only "backend
    unavailable"), and no log line says it is retrying, since it exits 1 at once."""
    import socket

    from greenops_exporter.cli import main

    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"
    caplog.set_level(logging.INFO)
    assert main(["check", "--backend", "dcgm", "--dcgm-url", url]) == 1
    out = capsys.readouterr().out
    assert f"backend unavailable: dcgm-exporter at {url}: " in out
    assert "retrying" not in caplog.text
    assert f"backend dcgm unavailable: dcgm-exporter at {url}" in caplog.text
