"""`check`: the backend chosen and why, each device, its capabilities and one read."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

from greenops_exporter.analysis.bottleneck import BottleneckClass, Signals
from greenops_exporter.backends.base import Capability, GpmReading, Reading
from greenops_exporter.backends.dcgm import DcgmBackend
from greenops_exporter.backends.dcgm_page import GpuPage
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.commands.wiring import backend_from, settings_from
from greenops_exporter.config.models import Config


async def _two_cycles(collector: Collector) -> Snapshot:
    """Two reads a moment apart: GPM values exist only as a difference of two samples."""
    snap = await collector.collect_once()
    if not snap.backend_up:  # check does not retry: one attempt, and why it failed
        await collector.close()
        return snap
    await asyncio.sleep(0.3)
    snap = await collector.collect_once()
    await collector.close()
    return snap


NOT_READ = "n/a"  # the device or backend does not report this value
NOT_ON_PAGE = "not on this page"  # dcgm-exporter's page lacks the field (its field list)


def _fmt(
    value: float | None, scale: float = 1.0, digits: int = 1, unit: str = "", na: str = NOT_READ
) -> str:
    if value is None:
        return na
    return f"{value * scale:.{digits}f}{unit}"


def _pair(a: float | None, b: float | None, scale: float, digits: int, unit: str, na: str) -> str:
    """Two values sharing a unit (`96.1 % / 14.4 %`); one word where neither is there, so
    that a user never reads a bare unit with no number (`- % / - %`)."""
    if a is None and b is None:
        return na
    return f"{_fmt(a, scale, digits, unit, na)} / {_fmt(b, scale, digits, unit, na)}"


def _print_host(snap: Snapshot, config: Config) -> None:
    """The host's RAPL zones, their power over the two reads, and what cannot be read."""
    h = snap.host
    if h is None:
        print("host energy: off (collectors.host)")
        return
    print(f"host energy (RAPL under {config.host.powercap_root}):")
    for z in h.zones:
        where = f"{z.zone} {z.package}".strip()
        state = "" if z.up else "  stale"
        print(f"  {where:<22} {_fmt(z.power_watts, unit=' W'):>10}  ({z.source}){state}")
    for u in h.unsupported:
        where = f"{u.zone} {u.package}".strip() or "-"
        print(f"  unsupported: {u.capability} {where}: {u.reason}")
    if not h.zones:
        print("  no host energy: CPU and DRAM are reported as unavailable")


def _dcgm_rows(page: GpuPage) -> list[tuple[str, str]]:
    """What dcgm-exporter's page offers for one GPU, and what the exporter makes of it."""
    fields = sorted(f.removeprefix("DCGM_FI_") for f in page.fields())
    ratios = [
        f
        for f in ("PROF_GR_ENGINE_ACTIVE", "PROF_DRAM_ACTIVE", "PROF_PIPE_TENSOR_ACTIVE")
        if f in fields
    ]
    if "PROF_SM_ACTIVE" in fields:
        signals = "gpm (DCGM_FI_PROF_SM_ACTIVE and the other profiling fields)"
    elif "DEV_GPU_UTIL" in fields or "PROF_GR_ENGINE_ACTIVE" in fields:
        used = f" with {', '.join(ratios)}" if ratios else ""
        signals = f"basic (utilisation{used}); add DCGM_FI_PROF_SM_ACTIVE to dcgm-exporter's fields"
    else:
        signals = (
            "none: no activity field, so no class; add DCGM_FI_DEV_GPU_UTIL or "
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE to dcgm-exporter's fields"
        )
    pods = ", ".join(
        f"{namespace}/{pod}/{container}" + ("" if gi is None else f" (GI {gi})")
        for gi, namespace, pod, container in sorted(page.pods, key=lambda p: (p[0] or 0, p[1:]))
    )
    if not pods:
        pods = "-" if page.kubernetes else "- (dcgm-exporter's Kubernetes mapping is off)"
    host = page.labels.get("Hostname") or page.labels.get("hostname") or "-"
    return [
        ("dcgm-exporter host", host),
        (f"fields read ({len(fields)})", ", ".join(fields)),
        ("class signals", signals),
        ("pods seen", pods),
    ]


def _bottleneck(cls: BottleneckClass | None, signals: Signals | None) -> str:
    if cls is None:
        return "-"
    if signals is None:
        return f"{cls} (no activity data: no class asserted)"
    return f"{cls} ({signals} signals)"


def _memory(r: Reading, page: GpuPage | None, na: str) -> str:
    """Used of total, one word where neither is known; where the page has framebuffer
    fields but not for every GPU instance, which instances have them (so the field list
    and the missing value do not seem to contradict each other)."""
    used, total = r.memory_used_bytes, r.memory_total_bytes
    if used is None and total is None:
        text = na
    else:
        text = f"{_fmt(used, 2**-30, 2, ' GiB', na)} of {_fmt(total, 2**-30, 2, ' GiB', na)}"
    if used is None and page is not None and "DCGM_FI_DEV_FB_USED" in page.fields():
        have = [gi for name, gi in page.values if name == "DCGM_FI_DEV_FB_USED"]
        instances = ", ".join("GPU" if gi is None else f"GI {gi}" for gi in sorted(have, key=str))
        every = ", ".join(map(str, sorted(page.profiles)))
        text += f" (DEV_FB_USED only for {instances} of GI {every})"
    return text


def _pcie(tx: int | None, rx: int | None, g: GpmReading | None, na: str) -> str:
    """NVML's byte counters; where a source has only rates (dcgm-exporter's profiling
    fields), the rates, said to be rates."""
    if tx is not None or rx is not None:
        return f"{na if tx is None else tx} / {na if rx is None else rx}"
    if g is not None and (g.pcie_tx_bytes_per_second, g.pcie_rx_bytes_per_second) != (None, None):
        rates = _pair(g.pcie_tx_bytes_per_second, g.pcie_rx_bytes_per_second, 1, 0, "", na)
        return f"{rates} per second"
    return na


def check(config: Config) -> int:
    backend, reason = backend_from(config)
    # read every expensive value on both cycles: check is about what the GPU can report
    # ...and opens the backend once: no retry (inf), so the log promises none
    settings = replace(
        settings_from(config), energy_anchor_seconds=0.0, backend_retry_seconds=math.inf
    )
    snap = asyncio.run(_two_cycles(Collector(backend, settings, reason)))
    print(f"backend: {snap.backend} ({reason})")
    _print_host(snap, config)
    if not snap.backend_up:
        print(f"backend unavailable: {snap.backend_down_reason or 'no device can be read'}")
        return 1
    if not snap.devices:
        print("no device found")
        return 1
    na = NOT_ON_PAGE if isinstance(backend, DcgmBackend) else NOT_READ
    for position, d in enumerate(snap.devices):
        info = d.info
        bus = info.pci_bus_id or na
        print(f"\nGPU {info.index}: {info.name or na}  {info.uuid}  bus {bus}")
        print(
            f"  architecture {info.architecture}, driver {info.driver_version or na}, "
            f"memory {_fmt(info.memory_total_bytes or None, 2**-30, 1, ' GiB', na)}, "
            f"power limit {_fmt(info.power_limit_watts, unit=' W', na=na)}, "
            f"MIG {'on' if info.mig_enabled else 'off'}"
        )
        supported = [c.value for c in Capability if info.supports(c)]
        missing = [c.value for c in Capability if not info.supports(c)]
        print(f"  supported:   {', '.join(supported)}")
        print(f"  unsupported: {', '.join(missing) or '-'}")
        r = d.reading
        if r is None or not d.up:
            print(f"  read failed: {d.stale_reason}")
            continue
        g = r.gpm
        page = backend.page(position) if isinstance(backend, DcgmBackend) else None
        rows = [
            ("power (average)", _fmt(r.power_watts, unit=" W", na=na)),
            ("power (instant)", _fmt(r.power_instant_watts, unit=" W", na=na)),
            ("energy counter", _fmt(r.energy_counter_joules, unit=" J", na=na)),
            (
                "utilization gpu/mem",
                _pair(r.utilization_gpu, r.utilization_memory, 100, 0, " %", na),
            ),
            ("memory used", _memory(r, page, na)),
            ("temperature", _fmt(r.temperature_celsius, unit=" C", digits=0, na=na)),
            (
                "clocks sm/mem",
                na
                if r.sm_clock_hertz is None and r.memory_clock_hertz is None
                else f"{_pair(r.sm_clock_hertz, r.memory_clock_hertz, 1e-6, 0, '', na)} MHz",
            ),
            ("P-state", f"P{r.pstate}" if r.pstate is not None else na),
            (
                "clock event reasons",
                hex(r.clock_event_reasons) if r.clock_event_reasons is not None else na,
            ),
            ("PCIe tx/rx bytes", _pcie(r.pcie_tx_bytes, r.pcie_rx_bytes, g, na)),
            (
                "SM active / occupancy",
                na if g is None else _pair(g.sm_active, g.sm_occupancy, 100, 1, " %", na),
            ),
            (
                "tensor / DRAM active",
                na if g is None else _pair(g.tensor_active, g.dram_active, 100, 1, " %", na),
            ),
            (
                "processes",
                ", ".join(
                    f"{p.pid} {p.command} {_fmt(p.used_memory_bytes, 2**-30, 2, ' GiB', na)}"
                    for p in r.processes
                )
                or "-",
            ),
            (
                "MIG devices",
                ", ".join(f"GI {m.gpu_instance_id} {m.profile}" for m in r.mig_devices) or "-",
            ),
            ("read time", _fmt(d.read_seconds, 1000, 2, " ms")),
            (
                "bottleneck",
                _bottleneck(d.waste.bottleneck, d.waste.signals),
            ),
            (
                "MIG right-size",
                f"{d.waste.right_size.profile} (frees {d.waste.right_size.freed_ratio:.0%})"
                if d.waste.right_size
                else "-",
            ),
            ("recommendation", d.waste.advice.text if d.waste.advice else "-"),
        ]
        if page is not None:
            rows += _dcgm_rows(page)
        for label, value in rows:
            print(f"  {label:<22} {value}")
    return 0
