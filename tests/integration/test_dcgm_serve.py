"""`serve --backend dcgm` as a process on 127.0.0.1, reading a real dcgm-exporter page from a
real HTTP server: the derived metrics with DCGM's pods, promtool-clean; dcgm-exporter failing
and coming back while everything else keeps serving; and, in process, the energy counter
going backwards and memory stranded by an idle pod."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dcgmpages import FIXTURES, MIB, PageServer
from greenops_exporter.analysis.attribution import PodKey
from greenops_exporter.analysis.waste import WasteSettings
from greenops_exporter.backends.base import Capability
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.commands.wiring import settings_from
from greenops_exporter.config.models import BackendConfig, Config
from greenops_exporter.metrics import Exposition

RTX = (FIXTURES / "rtx4000ada_k8s.txt").read_text()
POD = PodKey("default", "cuda-75454ffb9f-8ljq7", "cuda")
RTX_UUID = "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c"
SETTINGS = settings_from(Config(backend=BackendConfig(kind="dcgm")))  # as `serve` has them
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The exporter process, collecting every 0.25 s from `url`."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
        env |= {"PYTHONUNBUFFERED": "1", "GREENOPS_BACKEND__DCGM__TIMEOUT_SECONDS": "0.15"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "greenops_exporter",
                "serve",
                "--backend",
                "dcgm",
                "--dcgm-url",
                url,
                "--collect-interval",
                "0.25",
                "--device-timeout",
                "0.2",
                "--listen-address",
                f"127.0.0.1:{self.port}",
                "--hostname",
                "node-x",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()

    def scrape(self) -> tuple[str, dict[str, list]]:  # type: ignore[type-arg]
        status, text = self.get("/metrics")
        assert status == 200
        return text, {f.name: f.samples for f in text_string_to_metric_families(text)}

    def wait_for(self, name: str, value: float, timeout: float = 10.0) -> dict[str, list]:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stdout.read() if self.proc.stdout else "")
            try:
                _, families = self.scrape()
                if families.get(name) and families[name][0].value == value:
                    return families
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} never became {value}")

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture
def page() -> Iterator[PageServer]:
    with PageServer(RTX) as server:
        yield server


def one(families: dict[str, list], name: str, **labels: str) -> float:  # type: ignore[type-arg]
    base = name.removesuffix("_total")
    found = [
        s.value
        for s in families[base]
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, families.get(base))
    return float(found[0])


def test_serve_reads_the_page_and_survives_dcgm_exporter_failing(page: PageServer) -> None:
    served = Served(page.url)
    try:
        families = served.wait_for("greenops_backend_up", 1)
        time.sleep(0.6)  # a few cycles
        text, families = served.scrape()
        assert one(families, "greenops_gpu_power_watts", gpu="0") == pytest.approx(40.979)
        assert one(families, "greenops_gpu_temperature_celsius") == 48
        assert one(families, "greenops_gpu_memory_total_bytes") == (1 + 20015 + 457) * MIB
        assert one(families, "greenops_gpu_energy_source_info", source="counter") == 1
        [info] = families["greenops_gpu_info"]
        assert info.labels["model"] == "NVIDIA RTX 4000 Ada Generation"
        assert info.labels["hostname"] == "node-x"
        [backend] = families["greenops_backend_info"]
        assert backend.labels["backend"] == "dcgm"
        assert one(families, "greenops_gpu_bottleneck", **{"class": "idle"}) == 1
        assert one(families, "greenops_gpu_bottleneck_signals_info", signals="basic") == 1
        # the pod from dcgm-exporter's labels: its memory, and (the page never changes, so
        # no interval has passed) no energy yet but a series for it
        pod = {"namespace": POD.namespace, "pod": POD.pod, "container": POD.container}
        assert one(families, "greenops_pod_energy_joules_total", **pod) == 0.0
        [memory] = families["greenops_process_gpu_memory_bytes"]
        assert memory.value == 1 * MIB and memory.labels["command"] == "cuda"
        assert int(memory.labels["pid"]) >= 2**22
        if PROMTOOL or os.environ.get("CI"):
            check = subprocess.run(
                [PROMTOOL or "promtool", "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert check.returncode == 0, check.stdout + check.stderr
            assert check.stdout + check.stderr == ""

        page.status = 500
        families = served.wait_for("greenops_backend_up", 0)
        assert one(families, "greenops_gpu_up", gpu="0") == 0
        assert one(families, "greenops_backend_errors_total", operation="fetch") >= 1
        assert one(families, "greenops_collector_errors_total", call="fetch") >= 1
        assert served.get("/healthz")[0] == 200  # everything else keeps serving
        assert families["greenops_build_info"]
        time.sleep(0.6)
        _, later = served.scrape()
        failures = one(later, "greenops_backend_errors_total", operation="fetch")
        assert failures >= one(families, "greenops_backend_errors_total", operation="fetch") + 2

        page.status = 200
        families = served.wait_for("greenops_backend_up", 1)
        time.sleep(0.5)
        _, families = served.scrape()
        assert one(families, "greenops_gpu_up", gpu="0") == 1
    finally:
        out = served.stop()
    assert out.count("is down") == 1, out  # one line per state change, however long
    assert out.count("answers again") == 1, out


def rtx_with(energy_mj: int, power_w: float) -> str:
    return RTX.replace("} 455497156\n", f"}} {energy_mj}\n").replace(
        "} 40.979000\n", f"}} {power_w:f}\n"
    )


def test_energy_counter_going_backwards_is_a_reset() -> None:
    """A driver reload restarts DCGM's counter: counted as a reset, that interval integrated
    from power, and the exported total keeps growing."""
    now = [0.0]
    with PageServer(rtx_with(1_000_000, 50.0)) as server:
        backend = DcgmBackend(server.url, 0.5, clock=lambda: now[0])
        collector = Collector(backend, SETTINGS, monotonic=lambda: now[0])

        async def go() -> list[tuple[float, int]]:
            out = []
            for t, mj in ((1.0, 1_000_000), (2.0, 1_050_000), (3.0, 20_000), (4.0, 70_000)):
                now[0] = t
                server.page = rtx_with(mj, 50.0)
                [d] = (await collector.collect_once()).devices
                out.append((d.energy_joules_total, d.energy_counter_resets))
            await collector.close()
            return out

        totals = asyncio.run(go())
    assert [r for _, r in totals] == [0, 0, 1, 1]
    assert [e for e, _ in totals] == pytest.approx([0.0, 50.0, 100.0, 150.0])


def test_an_idle_pod_strands_memory_and_costs_energy() -> None:
    """The pod on the real page holds its GPU idle: after the stranded-after time it is
    named with its memory; each new page adds energy to it; the metrics carry its labels."""
    now = [0.0]
    settings = replace(SETTINGS, waste=WasteSettings(stranded_after_seconds=5.0))
    with PageServer(rtx_with(1_000_000, 40.0)) as server:
        backend = DcgmBackend(server.url, 0.5, clock=lambda: now[0])
        collector = Collector(backend, settings, monotonic=lambda: now[0])

        async def go() -> None:
            for second in range(1, 9):
                now[0] = float(second)
                server.page = rtx_with(1_000_000 + 40_000 * second, 40.0)
                await collector.collect_once()
            await collector.close()

        asyncio.run(go())
    [d] = collector.snapshot.devices
    [stranded] = d.waste.stranded
    assert (stranded.namespace, stranded.pod, stranded.used_memory_bytes) == (
        POD.namespace,
        POD.pod,
        1 * MIB,
    )
    assert d.pod_energy[POD] == pytest.approx(7 * 40.0)  # 7 intervals of 40 J, all its
    assert d.waste.idle_joules_with_holder == pytest.approx(7 * 40.0)
    text = Exposition("node-x", ("gpu", "efficiency", "processes", "carbon")).encode(
        collector.snapshot
    )
    families = {f.name: f.samples for f in text_string_to_metric_families(text.decode())}
    [sample] = families["greenops_process_stranded_memory_bytes"]
    assert sample.labels["pod"] == POD.pod and sample.value == 1 * MIB
    carbon = [s for s in families["greenops_pod_carbon_grams"] if s.labels["pod"] == POD.pod]
    assert carbon and all(s.value > 0 for s in carbon)


def test_the_loop_takes_backend_health_and_identity_from_the_page() -> None:
    """In process: backend_up and the backend's errors follow the page; a GPU's
    capabilities follow its fields; a GPU missing from the page is stale, not the backend."""
    now = [0.0]
    without_prof = "".join(line + "\n" for line in RTX.splitlines() if "_PROF_" not in line)
    with PageServer(without_prof) as server:
        backend = DcgmBackend(server.url, 0.5, clock=lambda: now[0])
        collector = Collector(backend, SETTINGS, monotonic=lambda: now[0])

        async def cycle(t: float) -> Snapshot:
            now[0] = t
            return await collector.collect_once()

        async def go() -> list[Snapshot]:
            snaps = [await cycle(1.0)]
            server.page = RTX  # profiling fields switched on in dcgm-exporter's list
            snaps.append(await cycle(2.0))
            server.status = 500
            snaps.append(await cycle(3.0))
            server.status, server.page = 200, RTX.replace(RTX_UUID, "GPU-another")
            snaps.append(await cycle(4.0))
            server.page = RTX
            snaps.append(await cycle(5.0))
            await collector.close()
            return snaps

        first, gained, down, missing, back = asyncio.run(go())
    assert first.backend_up and not first.devices[0].info.supports(Capability.GPM)
    assert gained.devices[0].info.supports(Capability.GPM)
    assert gained.devices[0].reading is not None and gained.devices[0].reading.gpm is not None
    assert not down.backend_up and dict(down.backend_errors) == {"fetch": 1}
    assert not down.devices[0].up and down.devices[0].errors == {"fetch": 1}
    assert missing.backend_up and not missing.devices[0].up
    assert missing.devices[0].errors == {"fetch": 1, "missing": 1}
    assert back.backend_up and back.devices[0].up
    assert dict(back.backend_errors) == {"fetch": 1}  # a counter: kept
