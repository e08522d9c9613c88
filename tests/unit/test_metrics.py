"""Rendering: names follow Prometheus conventions, values are the snapshot's, nothing stale."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from documentation import documentation
from fakenvml import FakeNvml
from greenops_exporter import metrics
from greenops_exporter.backends.nvml import NvmlBackend
from greenops_exporter.backends.sim import load_scenario
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.metrics import ALL_METRICS, Exposition, SnapshotCollector, collectors
from greenops_exporter.metrics.encode import format_value
from helpers import run_sim

UNIT_SUFFIXES = (
    "_joules_per_request",
    "_grams_total",
    "_grams_per_kwh",
    "_grams_per_request",
    "_grams_per_token",
    "_cost_total",
    "_joules_per_token",
    "_watts",
    "_joules_total",
    "_bytes",
    "_bytes_total",
    "_ratio",
    "_celsius",
    "_hertz",
    "_seconds",
    "_seconds_total",
    "_info",
    "_total",
    "_per_second",
)


def render(snap: Snapshot, hostname: str | None = "node-a", enabled=metrics.COLLECTOR_NAMES):
    """Through the exporter's own encoder, parsed back by client_python's parser."""
    text = Exposition(hostname, enabled).encode(snap).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def _parsed(families) -> dict:  # type: ignore[no-untyped-def]
    return {
        f.name: (
            f.type,
            f.documentation,
            sorted((s.name, sorted(s.labels.items()), s.value) for s in f.samples),
        )
        for f in families
    }


def test_fast_encoder_writes_what_client_python_writes() -> None:
    """Text and OpenMetrics, with label values that need escaping (quotes, backslashes,
    newlines): the same families, HELP, types, labels and values as client_python's."""
    from dataclasses import replace

    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as om_families,
    )

    snap = sim_snapshot()
    device = snap.devices[0]
    odd = replace(device.info, name='GPU "x"\\ \nnext', driver_version="5\\8")
    snap = replace(snap, devices=(replace(device, info=odd), *snap.devices[1:]))
    exposition = Exposition("node-a")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snap, "node-a"))
    ours = exposition.encode(snap).decode()
    theirs = generate_latest(registry).decode()
    strip = {"greenops_scrape_collector_duration_seconds"}  # timings differ per render
    a = {k: v for k, v in _parsed(text_string_to_metric_families(ours)).items() if k not in strip}
    b = {k: v for k, v in _parsed(text_string_to_metric_families(theirs)).items() if k not in strip}
    assert a == b and len(a) > 40
    assert any('GPU "x"' in str(v) for v in a["greenops_gpu_info"][2])
    ours_om = exposition.encode(snap, openmetrics=True).decode()
    theirs_om = om_latest(registry).decode()
    a = {k: v for k, v in _parsed(om_families(ours_om)).items() if k not in strip}
    b = {k: v for k, v in _parsed(om_families(theirs_om)).items() if k not in strip}
    assert a == b and len(a) > 40


@given(st.floats() | st.sampled_from([1e6, -1e6, 999999.9999, 1e6 + 0.5, 1e-05, -0.0, 1e16]))
def test_values_are_written_as_client_python_writes_them(value: float) -> None:
    """The fast path (Python's repr below a million) and the slow one agree with
    floatToGoString at every magnitude, at the boundary, and for NaN and infinities."""
    from prometheus_client.utils import floatToGoString

    assert format_value(value) == floatToGoString(value)
    body = Exposition(None).encode(
        Snapshot(backend="sim", backend_up=True, backend_reason="", cycle_seconds=value)
    )
    [line] = [x for x in body.decode().splitlines() if x.startswith("greenops_collection_dur")]
    assert line.split()[-1] == floatToGoString(value)


def test_series_prefixes_of_gone_series_are_forgotten() -> None:
    """Label sets that go away (churning pods, a GPU replaced) do not pile up: each
    family's remembered prefixes stay within twice its live series (+64), and a filtered
    scrape forgets nothing."""
    from dataclasses import replace

    snap = sim_snapshot()
    exposition = Exposition("node-a")
    exposition.encode(snap)
    full = sum(len(p) for p in exposition._prefixes.values())
    exposition.encode(snap, names=["greenops_gpu_power_watts"])
    assert sum(len(p) for p in exposition._prefixes.values()) == full
    device = snap.devices[0]
    for n in range(200):  # GPU 0 comes back under a new uuid 200 times
        info = replace(device.info, uuid=f"GPU-{n}")
        families = exposition.families(replace_devices(snap, (replace(device, info=info),)))
        exposition.encode(replace_devices(snap, (replace(device, info=info),)))
    for name, family in families.by_name.items():
        assert len(exposition._prefixes[name]) <= 2 * len(family.series) + 64, name
    assert sum(len(p) for p in exposition._prefixes.values()) < 200 * len(families.by_name)


def replace_devices(snap: Snapshot, devices: tuple) -> Snapshot:  # type: ignore[type-arg]
    from dataclasses import replace

    return replace(snap, devices=devices)


def sim_snapshot(cycles: int = 2) -> Snapshot:
    return run_sim(load_scenario(None), cycles)


def samples(families: dict, name: str) -> list:
    base = name.removesuffix("_total")
    return [s for s in families[base].samples if s.name == name]


def test_names_units_and_help() -> None:
    names = [m.name for m in ALL_METRICS]
    assert len(names) == len(set(names))
    for m in ALL_METRICS:
        assert re.fullmatch(r"greenops_[a-z0-9_]+", m.name), m.name
        assert m.help and m.help.endswith("."), m.name
        if m.kind == "counter":
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        assert m.name.endswith(UNIT_SUFFIXES) or m.name in {
            "greenops_gpu_up",
            "greenops_gpu_bottleneck",
            "greenops_mig_bottleneck",  # the same state set, per MIG GPU instance
            "greenops_backend_up",
            "greenops_source_up",
            "greenops_host_zone_up",
            "greenops_gpu_performance_state",
            "greenops_gpu_clock_event_reason",
            "greenops_scrape_collector_success",
        }, m.name


def test_every_exposed_family_is_declared_with_help() -> None:
    _, families = render(sim_snapshot())
    declared = {m.name.removesuffix("_total") for m in ALL_METRICS}
    for name, family in families.items():
        assert name in declared, name
        assert family.documentation, name


def test_values_come_from_the_snapshot() -> None:
    snap = sim_snapshot()
    _, families = render(snap)
    by_gpu = {s.labels["gpu"]: s for s in samples(families, "greenops_gpu_power_watts")}
    for d in snap.devices:
        assert d.reading is not None
        assert by_gpu[str(d.info.index)].value == pytest.approx(d.reading.power_watts)
        assert by_gpu[str(d.info.index)].labels["uuid"] == d.info.uuid
        assert by_gpu[str(d.info.index)].labels["hostname"] == "node-a"
    energy = {
        s.labels["gpu"]: s.value for s in samples(families, "greenops_gpu_energy_joules_total")
    }
    assert energy == {str(d.info.index): pytest.approx(d.energy_joules_total) for d in snap.devices}
    assert all(v > 0 for v in energy.values())
    procs = samples(families, "greenops_process_gpu_memory_bytes")
    assert {(s.labels["pid"], s.labels["command"]) for s in procs} >= {("5202", "jupyter-kernel")}
    sm = samples(families, "greenops_gpu_sm_active_ratio")
    assert {s.labels["gpu"] for s in sm} == {"0", "1"}  # GPM only on the H100s
    reasons = {
        s.labels["reason"]: s.value
        for s in samples(families, "greenops_gpu_clock_event_reason")
        if s.labels["gpu"] == "0"
    }
    assert reasons["sw_power_cap"] == 1.0 and reasons["hw_thermal_slowdown"] == 0.0
    [build] = samples(families, "greenops_build_info")
    assert build.labels["version"]
    [backend] = samples(families, "greenops_backend_info")
    assert backend.labels["backend"] == "sim"
    assert samples(families, "greenops_collection_cycles_total")[0].value == 2


def test_hostname_label_can_be_switched_off() -> None:
    _, families = render(sim_snapshot(), hostname=None)
    assert all("hostname" not in s.labels for s in samples(families, "greenops_gpu_up"))


def test_switched_off_collectors_export_nothing() -> None:
    _, families = render(sim_snapshot(), enabled=["gpu"])
    assert "greenops_process_gpu_memory_bytes" not in families
    assert "greenops_gpu_sm_active_ratio" not in families
    assert "greenops_gpu_power_watts" in families
    ok = {s.labels["collector"] for s in samples(families, "greenops_scrape_collector_success")}
    assert ok == {"gpu"}


def test_a_failing_collector_does_not_fail_the_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(out: object, snap: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(collectors.RENDERERS, "gpm", broken)
    _, families = render(sim_snapshot())
    success = {
        s.labels["collector"]: s.value
        for s in samples(families, "greenops_scrape_collector_success")
    }
    assert success["gpm"] == 0.0 and success["gpu"] == 1.0
    assert "greenops_gpu_power_watts" in families


def test_stale_gpu_exports_up_0_and_keeps_its_counter_but_no_gauges() -> None:
    fake = FakeNvml(devices=2)
    collector = Collector(NvmlBackend(fake, clock=fake.clock), monotonic=fake.clock)

    async def go() -> Snapshot:
        fake.cursor = 100
        await collector.collect_once()
        fake.lost.add(1)
        fake.cursor = 101
        return await collector.collect_once()

    snap = asyncio.run(go())
    _, families = render(snap)
    up = {s.labels["gpu"]: s.value for s in samples(families, "greenops_gpu_up")}
    assert up == {"0": 1.0, "1": 0.0}
    assert {s.labels["gpu"] for s in samples(families, "greenops_gpu_power_watts")} == {"0"}
    assert {s.labels["gpu"] for s in samples(families, "greenops_gpu_energy_joules_total")} == {
        "0",
        "1",
    }
    errors = samples(families, "greenops_collector_errors_total")
    assert [(s.labels["gpu"], s.labels["call"], s.value) for s in errors] == [
        ("1", "nvmlDeviceGetMemoryInfo", 1.0)
    ]


def test_unsupported_capabilities_export_no_series() -> None:
    fake = FakeNvml()
    collector = Collector(NvmlBackend(fake, clock=fake.clock), monotonic=fake.clock)
    snap = asyncio.run(collector.collect_once())
    _, families = render(snap)
    missing = {
        s.labels["capability"]
        for s in samples(families, "greenops_gpu_unsupported_capability_info")
    }
    assert missing == {"nvlink_counters", "mig"}  # as the recorded H100 answered
    assert "greenops_gpu_nvlink_bytes" not in families
    assert "greenops_gpu_nvlink_throughput_bytes_per_second" not in families
    assert "greenops_gpu_pcie_bytes" in families


def test_the_energy_counters_help_describes_the_real_method() -> None:
    """HELP said "an anchor every few seconds with instant power integrated in between";
    the meter integrates the driver's power samples between anchors every
    energy_anchor_seconds (30 s) and spreads each correction forward (analysis/energy.py)."""
    from greenops_exporter.collect import CollectSettings
    from greenops_exporter.metrics.names import ENERGY

    anchor = CollectSettings().energy_anchor_seconds
    assert f"every energy_anchor_seconds ({anchor:g} s by default)" in ENERGY.help
    assert "driver's power samples" in ENERGY.help and "spread forward" in ENERGY.help
    assert "every few seconds" not in ENERGY.help


def test_the_readme_names_the_process_metrics_as_exported() -> None:
    """client_python's process metrics are registered under the namespace
    greenops_exporter (commands/serve.py): the README must not call them bare `process_*`."""

    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(namespace="greenops_exporter", registry=registry)
    exported = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert exported and all(n.startswith("greenops_exporter_process_") for n in exported)
    readme = documentation()
    assert "`process_*`" not in readme
    assert "`greenops_exporter_process_*`" in readme
