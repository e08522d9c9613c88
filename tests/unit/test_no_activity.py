"""No verdict without data: a GPU that reports no activity (no utilisation, no engine or SM
activity) gets no class, books its energy under class="unknown", counts no idle energy, waste
or waste cost, gets no right-sizing and is told what is missing. On a published
dcgm-exporter page (its GPUs 1-3 carry no activity field) and through the real nvml backend
on the stand-in pynvml, for a vGPU (utilisation NOT_SUPPORTED) and a failing call."""

from __future__ import annotations

import asyncio
import copy
import shutil
import subprocess
from typing import Any

import pynvml as real
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dcgmpages import PageServer, real_page
from fakenvml import FakeNvml
from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.footprint import FootprintSettings
from greenops_exporter.backends.base import Capability
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.backends.nvml import NvmlBackend
from greenops_exporter.collect import Collector, CollectSettings, Snapshot
from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics import Exposition

UNKNOWN, IDLE = BottleneckClass.UNKNOWN, BottleneckClass.IDLE
FIVE = [c for c in BottleneckClass if c is not UNKNOWN]
PRICED = CollectSettings(
    footprint_for=lambda info: FootprintSettings(
        energy_price_per_kwh=0.30, rental_price_per_hour=2.0
    )
)


def families(snap: Snapshot) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = Exposition("node-a").encode(snap).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def of_gpu(
    found: dict[str, list[tuple[dict[str, str], float]]], name: str, uuid: str
) -> dict[str, float]:
    """One GPU's series of a family by its one varying label (class, holder, code...)."""
    out = {}
    for labels, value in found.get(name, []):
        if labels.get("uuid") == uuid:
            rest = {
                k: v
                for k, v in labels.items()
                if k not in {"gpu", "uuid", "hostname", "model", "node"}
            }
            out[",".join(f"{k}={v}" for k, v in sorted(rest.items()))] = value
    return out


def assert_no_verdict(d: DeviceSnapshot, advice_text: str) -> None:
    w = d.waste
    assert w.bottleneck is UNKNOWN and w.signals is None
    assert w.idle_joules_no_holder == 0.0 and w.idle_joules_with_holder == 0.0
    assert w.right_size is None and w.underutilization_ratio is None
    assert w.advice is not None and w.advice.code == "add_activity_data"
    assert w.advice.text == advice_text
    assert all(cost == 0.0 for cost in d.costs.waste_cost.values())
    # every joule is booked, under unknown: the classes still sum to the GPU's energy
    assert w.class_joules[UNKNOWN] == pytest.approx(d.energy_joules_total, rel=1e-9)
    assert all(w.class_joules[c] == 0.0 and w.class_seconds[c] == 0.0 for c in FIVE)


V100_PAGE = "10-v100x4-fragment-250.txt"
V100 = {
    0: "GPU-a6158b59-2c1e-1e63-0068-9178c4298abd",
    1: "GPU-8d5053b3-9280-7d1a-751b-4fd2fdd547c5",
    2: "GPU-a9079f15-493e-6c1c-c78c-73ec2b840cba",
    3: "GPU-bd94f0f5-8c2f-bc95-74ad-5f99fdc33d01",
}
DCGM_ADVICE = (
    "no activity data on this page: add DCGM_FI_DEV_GPU_UTIL or "
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE to dcgm-exporter's field list"
)


def collect_dcgm(page: str, cycles: int = 3) -> Snapshot:
    now = [100.0]
    with PageServer(page) as server:
        backend = DcgmBackend(server.url, 2.0, clock=lambda: now[0])
        collector = Collector(backend, PRICED, monotonic=lambda: now[0])

        async def go() -> Snapshot:
            snap = collector.snapshot
            for _ in range(cycles):
                now[0] += 1.0
                snap = await collector.collect_once()
            await collector.close()
            return snap

        return asyncio.run(go())


def test_gpus_without_an_activity_field_get_no_class_250() -> None:
    """GPUs 1-3 of the V100 page have identity and limits, no GPU_UTIL, GR_ENGINE_ACTIVE or
    SM_ACTIVE: no class (1 on none of the five), advice naming the fields. GPU 0 has
    GPU_UTIL 0: it is idle, a verdict its page supports."""
    snap = collect_dcgm(real_page(V100_PAGE))
    by_uuid = {d.info.uuid: d for d in snap.devices}
    assert set(by_uuid) == set(V100.values())
    assert by_uuid[V100[0]].waste.bottleneck is IDLE
    for i in (1, 2, 3):
        d = by_uuid[V100[i]]
        assert not d.info.supports(Capability.UTILIZATION)
        assert_no_verdict(d, DCGM_ADVICE)
    found = families(snap)
    for i in (1, 2, 3):
        gauge = of_gpu(found, "greenops_gpu_bottleneck", V100[i])
        assert {k: v for k, v in gauge.items() if k != "class=unknown"} == {
            f"class={c.value}": 0.0 for c in FIVE
        }
        assert gauge["class=unknown"] == 1.0
        assert of_gpu(found, "greenops_gpu_bottleneck_signals_info", V100[i]) == {}
        assert of_gpu(found, "greenops_gpu_mig_rightsize_info", V100[i]) == {}
        assert of_gpu(found, "greenops_gpu_idle_energy_joules_total", V100[i]) == {
            "holder=none": 0.0,
            "holder=process": 0.0,
        }
    idle_gauge = of_gpu(found, "greenops_gpu_bottleneck", V100[0])
    assert idle_gauge["class=idle"] == 1.0 and idle_gauge["class=unknown"] == 0.0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's promtool not installed")
def test_unknown_class_metrics_pass_promtool() -> None:
    text = Exposition("node-a").encode(collect_dcgm(real_page(V100_PAGE))).decode()
    assert 'class="unknown"' in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


# --- nvml: the real backend on the stand-in pynvml serving the recorded H100 ----------------

NVML_ADVICE = (
    "no activity data: NVML reports no utilisation for this GPU (a vGPU, or the call "
    "fails), so no class, idle waste or right-sizing"
)


def no_gpm_probe() -> dict[str, Any]:
    from fakenvml import load_probe

    probe = copy.deepcopy(load_probe())
    probe["static"]["gpm_support"]["isSupportedDevice"] = 0
    return probe


def collect_nvml(fake: FakeNvml, rows: range) -> Snapshot:
    collector = Collector(NvmlBackend(fake, clock=fake.clock), PRICED, monotonic=fake.clock)

    async def go() -> Snapshot:
        snap = collector.snapshot
        for row in rows:
            fake.cursor = row
            snap = await collector.collect_once()
        await collector.close()
        return snap

    return asyncio.run(go())


def not_supported(fake: FakeNvml) -> None:
    def utilization(handle: Any) -> Any:
        fake._enter("nvmlDeviceGetUtilizationRates", handle)
        raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    fake.nvmlDeviceGetUtilizationRates = utilization  # type: ignore[method-assign]


# the recorded trace's first 120 rows: idle without a context, then idle with one (real idle
# on the recorded GPU: what a vGPU without utilisation would have been called)
ROWS = range(0, 120)


def test_an_nvml_vgpu_without_utilisation_gets_no_class() -> None:
    """A vGPU: NVML answers NOT_SUPPORTED for utilisation and has no GPM, so the probe finds
    no utilisation capability; the energy still counts, under unknown."""
    fake = FakeNvml(probe=no_gpm_probe())
    not_supported(fake)
    snap = collect_nvml(fake, ROWS)
    [d] = snap.devices
    assert not d.info.supports(Capability.UTILIZATION) and not d.info.supports(Capability.GPM)
    assert d.energy_joules_total > 0  # the recorded counter: ~78-120 W for 12 s
    truth = (fake.trace[ROWS[-1]]["energy_mj"] - fake.trace[ROWS[0]]["energy_mj"]) / 1000
    assert d.energy_joules_total == pytest.approx(truth, rel=0.01)  # the meter's 1 %
    assert_no_verdict(d, NVML_ADVICE)
    assert d.waste.class_seconds[UNKNOWN] == pytest.approx(
        fake.trace[ROWS[-1]]["t"] - fake.trace[ROWS[0]]["t"], rel=1e-9
    )


def test_an_nvml_utilisation_call_that_fails_gives_no_class() -> None:
    """Utilisation supported at the probe, then failing on every read (NOT_SUPPORTED, as an
    unlicensed vGPU answers; NVML_ERROR_UNKNOWN would mark the GPU lost, not unknown):
    counted as an error of that call, and no class rather than idle."""
    fake = FakeNvml(probe=no_gpm_probe())

    def failing(handle: Any) -> Any:
        fake._enter("nvmlDeviceGetUtilizationRates", handle)
        raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    collector = Collector(NvmlBackend(fake, clock=fake.clock), PRICED, monotonic=fake.clock)

    async def go() -> Snapshot:
        snap = await collector.collect_once()  # opens with utilisation working
        fake.nvmlDeviceGetUtilizationRates = failing  # type: ignore[method-assign]
        for row in ROWS[1:]:
            fake.cursor = row
            snap = await collector.collect_once()
        await collector.close()
        return snap

    snap = asyncio.run(go())
    [d] = snap.devices
    assert d.info.supports(Capability.UTILIZATION)
    assert d.errors.get("nvmlDeviceGetUtilizationRates", 0) == len(ROWS) - 1
    assert d.waste.bottleneck is UNKNOWN and d.waste.signals is None
    assert d.waste.advice is not None and d.waste.advice.text == NVML_ADVICE
    # the first interval ended with a good reading: it alone was classed (idle)
    w = d.waste
    assert w.class_joules[UNKNOWN] + w.class_joules[IDLE] == pytest.approx(
        d.energy_joules_total, rel=1e-9
    )
    assert w.class_joules[UNKNOWN] > 0.9 * d.energy_joules_total
    assert w.idle_joules_no_holder == pytest.approx(w.class_joules[IDLE], rel=1e-9)


def test_nvml_mig_instances_without_activity_get_no_class() -> None:
    """The nvml backend reads no GPM per GPU instance: each instance is `unknown` (not idle),
    and the GPU's 3 of 7 slices in no instance are named, on the real backend."""
    from greenops_exporter.analysis.mig import NO_INSTANCE_ACTIVITY

    gib = 1 << 30
    fake = FakeNvml()
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
    snap = collect_nvml(fake, range(0, 20))
    [d] = snap.devices
    assert [(v.gpu_instance_id, v.bottleneck) for v in d.waste.instances] == [
        (1, UNKNOWN),
        (2, UNKNOWN),
    ]
    assert all(v.advice.text == NO_INSTANCE_ACTIVITY for v in d.waste.instances)
    assert d.waste.mig_unallocated_ratio == pytest.approx(1 - 4 / 7, rel=1e-12)
    assert d.waste.advice is not None and d.waste.advice.code == "allocate_idle_mig_capacity"
    found = families(snap)
    gauge = {
        (labels["gpu_instance"], labels["class"]): value
        for labels, value in found["greenops_mig_bottleneck"]
    }
    assert gauge[("1", "unknown")] == 1.0 and gauge[("1", "idle")] == 0.0
