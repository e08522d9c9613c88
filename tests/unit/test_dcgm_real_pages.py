"""The dcgm backend on pages operators published from live systems (`tests/fixtures/dcgm/real/`,
each file's first line says where): every expected value below is read off the page itself.
Ratios and watts are compared to the page's printed digits (1e-9 relative: a float's
round trip), MiB to whole bytes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dcgmpages import FIXTURES, MIB, PageServer, real_page
from greenops_exporter.analysis.bottleneck import BottleneckClass, Signals, classify
from greenops_exporter.analysis.efficiency import Efficiency
from greenops_exporter.backends.base import Capability, Reading, ReadPlan
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.backends.dcgm_page import GpuPage, device_info, parse_page, reading
from greenops_exporter.commands.wiring import backend_from
from greenops_exporter.config.models import load_config
from greenops_exporter.facts.gpu_models import model_by_name

EXACT = 1e-9


def gpus(name: str) -> list[GpuPage]:
    return list(parse_page(real_page(name)).values())


def read_all(name: str) -> list[Reading]:
    return [reading(gpu, 1.0, ReadPlan()) for gpu in gpus(name)]


A100_DOCS = "07-a100-mig-whole-and-instance-nvdocs.txt"


def test_whole_gpu_series_describe_the_gpu_beside_its_instances() -> None:
    """NVIDIA's own docs sample: an A100 in MIG mode with whole-GPU series and one 1g.5gb
    instance. The whole-GPU values are the GPU's; the instance's are the instance's."""
    [gpu] = gpus(A100_DOCS)
    [r] = read_all(A100_DOCS)
    assert gpu.profiles == {13: "1g.5gb"}
    assert r.utilization_gpu == pytest.approx(0.995630, rel=EXACT)  # GR_ENGINE_ACTIVE
    assert r.gpm is not None
    assert r.gpm.graphics_active == pytest.approx(0.995630, rel=EXACT)
    assert r.gpm.tensor_active == pytest.approx(0.929260, rel=EXACT)
    assert r.gpm.dram_active == pytest.approx(0.690789, rel=EXACT)
    assert r.gpm.pcie_tx_bytes_per_second == 33011804
    assert r.gpm.pcie_rx_bytes_per_second == 97863601
    assert r.memory_used_bytes == 4845 * MIB  # FB_USED, no FB_RESERVED on this page
    assert r.memory_total_bytes == (4845 + 35690) * MIB
    assert r.power_watts == pytest.approx(409.692, rel=EXACT)
    assert r.energy_counter_joules == pytest.approx(319159.391, rel=EXACT)
    # the instance keeps its own value
    [instance] = r.mig_devices
    assert (instance.gpu_instance_id, instance.profile) == (13, "1g.5gb")
    assert instance.sm_active == pytest.approx(0.995687, rel=EXACT)
    info = device_info(gpu)
    assert info.supports(Capability.MEMORY) and info.mig_enabled
    assert info.memory_total_bytes == (4845 + 35690) * MIB


H100_PODS = "06-h100x8-aicr-pods-sampled.txt"


def test_no_right_sizing_on_unknown_memory_or_without_work() -> None:
    """8 x H100 at GPU_UTIL 0, a pod on GPU 0 and no DCGM_FI_DEV_FB_USED on the page: the
    pod's memory is unknown, not 0, and no GPU did any work, so no slice fits anything."""
    pages = gpus(H100_PODS)
    assert len(pages) == 8
    for gpu in pages:
        e = Efficiency(model=model_by_name(gpu.labels["modelName"]), advice_window_seconds=60)
        for t in range(30):  # the page sampled every second, the same values each time
            e.update(reading(gpu, float(t), ReadPlan()), 0.0)
        r = reading(gpu, 30.0, ReadPlan())
        assert r.utilization_gpu == 0.0 and r.memory_used_bytes is None
        assert e.current is BottleneckClass.IDLE
        assert e.right_size is None, gpu.index
        assert e.advice is not None and e.advice.code != "use_smaller_slice"
        assert "MIG" not in e.advice.text
    # the pod on GPU 0 holds the GPU although its memory is unknown
    [pod] = reading(pages[0], 0.0, ReadPlan()).processes
    assert pod.pod == "vllm-agg-0-vllmdecodeworker-s65j5" and pod.used_memory_bytes is None
    e = Efficiency(model=model_by_name(pages[0].labels["modelName"]), advice_window_seconds=60)
    for t in range(30):
        e.update(reading(pages[0], float(t), ReadPlan()), 0.0)
    assert e.advice is not None and e.advice.code == "release_idle_allocation"


def classified(name: str) -> list[tuple[BottleneckClass, Signals | None]]:
    """Each GPU's class on a page, with the page's own PCIe rates as the traffic."""
    out = []
    for r in read_all(name):
        g = r.gpm
        rate = (
            None
            if g is None
            else (g.pcie_tx_bytes_per_second or 0.0) + (g.pcie_rx_bytes_per_second or 0.0)
        )
        out.append(classify(r, rate))
    return out


def test_every_profiling_ratio_on_the_page_is_used() -> None:
    """A loaded T4 with the GPU Operator's default fields (no SM_ACTIVE): MEM_COPY_UTIL reads
    73 % but DRAM is 9.3 % active, so it is not memory-bound; the engine ran 15.6 % of the
    time (GPU_UTIL's sampled 91 % says only that a kernel ran in each sample): overhead."""
    [r] = read_all("03-t4-ericsson-loaded.txt")
    assert r.utilization_memory == pytest.approx(0.73, rel=EXACT)
    assert r.utilization_gpu == pytest.approx(0.91, rel=EXACT)
    assert r.gpm is not None and r.gpm.sm_active is None
    assert r.gpm.dram_active == pytest.approx(0.092781, rel=EXACT)
    assert r.gpm.graphics_active == pytest.approx(0.156205, rel=EXACT)
    assert classified("03-t4-ericsson-loaded.txt") == [(BottleneckClass.OVERHEAD, Signals.BASIC)]
    # NVIDIA's A100 sample: DRAM 69 % active is memory-bound (threshold 0.6), whatever the
    # instance series say (its 1g.5gb instance alone would have weighed 1/7 of it)
    assert classified(A100_DOCS) == [(BottleneckClass.MEMORY, Signals.BASIC)]


def test_kubernetes_mapping_is_decided_for_the_whole_page() -> None:
    """A 580-driver GPU Operator page labels only GPU 0 (its pod); GPUs 1-7 carry no pod
    labels at all, yet the mapping is on: they are held by nobody, not "mapping off"."""
    pages = gpus(H100_PODS)
    assert "pod" in pages[0].labels and all("pod" not in g.labels for g in pages[1:])
    for gpu in pages:
        assert gpu.kubernetes, gpu.index
        assert device_info(gpu).supports(Capability.PROCESSES), gpu.index
    assert [len(reading(g, 1.0, ReadPlan()).processes) for g in pages] == [1, 0, 0, 0, 0, 0, 0, 0]
    # the older exporter's empty labels (gmt#138) and a page without any (the kops L4): on, off
    [v100] = gpus("11-v100-nomodel-k8s-gmt138.txt")
    assert v100.kubernetes and not v100.pods
    [l4] = gpus("01-l4-kops-gpu-operator.txt")
    assert not l4.kubernetes and not device_info(l4).supports(Capability.PROCESSES)


def test_kubernetes_mapping_can_be_set_in_the_config() -> None:
    page = real_page(H100_PODS)
    off = list(parse_page(page, kubernetes=False).values())
    assert not any(g.kubernetes or g.pods for g in off)
    assert reading(off[0], 1.0, ReadPlan()).processes == ()
    on = list(parse_page(real_page("01-l4-kops-gpu-operator.txt"), kubernetes=True).values())
    assert on[0].kubernetes and device_info(on[0]).supports(Capability.PROCESSES)
    config = load_config(None, environ={"GREENOPS_BACKEND__DCGM__KUBERNETES": "false"})
    assert config.backend.dcgm.kubernetes is False
    backend, _ = backend_from(load_config(None, environ={"GREENOPS_BACKEND__KIND": "dcgm"}))
    assert isinstance(backend, DcgmBackend) and backend.kubernetes is None  # from the page


A30_POD = "15-a30-mig-2g-pod-68-before.txt"


def mig_efficiency(page: str) -> Efficiency:
    [gpu] = parse_page(page).values()
    e = Efficiency(device_name=gpu.labels.get("modelName", ""), advice_window_seconds=60)
    for t in range(30):
        e.update(reading(gpu, float(t), ReadPlan()), 0.0)
    return e


def test_a_mig_gpu_is_judged_per_instance_and_its_unheld_slices_named() -> None:
    """#68's A30: one 2g.12gb instance with a pod, GR_ENGINE_ACTIVE 0.117468, two of the A30's
    four slices in no instance. The instance is judged on its own activity; the GPU-level
    line names the capacity nobody can use, not "batch more" from a half-empty average."""
    page = real_page(A30_POD)
    e = mig_efficiency(page)
    [instance] = e.instances
    assert (instance.gpu_instance_id, instance.profile) == (1, "2g.12gb")
    assert instance.bottleneck is BottleneckClass.OVERHEAD  # 0.117 of its own time
    assert instance.advice.code == "batch_or_fuse"
    assert e.mig_unallocated_ratio == pytest.approx(1 - 2 / 4, rel=EXACT)
    assert e.advice is not None and e.advice.code == "allocate_idle_mig_capacity"
    assert e.advice.text.startswith("50% of this GPU (2 of 4 compute slices) is in no MIG")
    assert e.instance_seconds[(1, "2g.12gb", BottleneckClass.OVERHEAD)] == pytest.approx(29.0)
    # the same instance saturated (the "after" reading): compute-bound, and the GPU
    # is still not told to batch more (its weighted activity, 0.48, would have said so)
    busy = mig_efficiency(page.replace("} 0.117468", "} 0.96"))
    assert busy.instances[0].bottleneck is BottleneckClass.COMPUTE
    assert busy.instances[0].advice.code == "shift_deferrable_work"
    assert busy.advice is not None and busy.advice.code == "allocate_idle_mig_capacity"


def test_mig_instance_metrics_pass_promtool() -> None:
    """The per-instance families on the A30 page, through the real HTTP path and promtool."""
    import asyncio

    from prometheus_client.parser import text_string_to_metric_families

    from greenops_exporter.collect import Collector, CollectSettings
    from greenops_exporter.metrics import Exposition

    now = [100.0]
    with PageServer(real_page(A30_POD)) as server:
        collector = Collector(
            DcgmBackend(server.url, 2.0, clock=lambda: now[0]),
            CollectSettings(),
            monotonic=lambda: now[0],
        )

        async def go() -> str:
            await collector.collect_once()
            snap = await collector.collect_once()
            await collector.close()
            return Exposition("node-a").encode(snap).decode()

        text = asyncio.run(go())
    found = {
        (s.name, s.labels.get("class", s.labels.get("code", ""))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(("greenops_mig_", "greenops_gpu_mig_unallocated"))
    }
    assert found[("greenops_gpu_mig_unallocated_ratio", "")] == 0.5
    assert found[("greenops_mig_bottleneck", "overhead")] == 1.0
    assert sum(v for (n, _), v in found.items() if n == "greenops_mig_bottleneck") == 1.0
    assert found[("greenops_mig_recommendation_info", "batch_or_fuse")] == 1.0
    if shutil.which("promtool"):
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout


def test_instance_utilisation_is_not_the_gpus() -> None:
    """dcgm-exporter writes DCGM_FI_DEV_GPU_UTIL 0 for MIG instances (unsupported there,
    #216): the GPU's utilisation is its engine activity, never the lowest instance's 0."""
    from dcgmpages import labels, render

    series = [
        ("DCGM_FI_DEV_GPU_UTIL", labels(instance=(1, "3g.40gb")), 0),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", labels(instance=(1, "3g.40gb")), 0),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", labels(instance=(1, "3g.40gb")), 0.7),
    ]
    [r] = [reading(g, 1.0, ReadPlan()) for g in parse_page(render(series)).values()]
    assert r.utilization_gpu == pytest.approx(0.7 * 3 / 7, rel=EXACT)
    assert r.utilization_memory is None


REAL_PAGES = sorted(p.name for p in (FIXTURES / "real").glob("*.txt"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's promtool not installed")
@pytest.mark.parametrize("name", [n for n in REAL_PAGES if not n.startswith("13-")])
def test_every_published_page_exports_promtool_clean_metrics(name: str) -> None:
    """Each usable page through the backend, two collection cycles and the exposition:
    `promtool check metrics` has nothing to say, and every GPU of the page is there."""
    import asyncio

    from greenops_exporter.collect import Collector, CollectSettings
    from greenops_exporter.metrics import Exposition

    now = [100.0]
    with PageServer(real_page(name)) as server:
        collector = Collector(
            DcgmBackend(server.url, 2.0, clock=lambda: now[0]),
            CollectSettings(),
            monotonic=lambda: now[0],
        )

        async def go() -> tuple[int, str]:
            snap = await collector.collect_once()
            now[0] += 1.0
            snap = await collector.collect_once()
            await collector.close()
            return len(snap.devices), Exposition("node-a").encode(snap).decode()

        count, text = asyncio.run(go())
    assert count == len(gpus(name)) > 0
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_unheld_slices_are_not_claimed_where_the_page_lists_too_few_instances() -> None:
    """NVIDIA's sample shows one 1g.5gb instance (1/7 of the SMs) on a GPU 99.56 % busy: the
    page does not list every instance, so no share is called unallocated."""
    e = mig_efficiency(real_page(A100_DOCS))
    assert [v.gpu_instance_id for v in e.instances] == [13]
    assert e.mig_unallocated_ratio is None
    assert e.advice is not None and e.advice.code == "raise_arithmetic_intensity"  # memory
