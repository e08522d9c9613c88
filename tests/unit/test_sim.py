"""The simulated fleet: calibrated to the H100 recording, consistent, deterministic."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from fakenvml import load_trace
from greenops_exporter.analysis.energy import cumulative_energy
from greenops_exporter.backends.base import Capability, ProcessUtilizationPolicy, ReadPlan
from greenops_exporter.backends.sim import Scenario, ScenarioError, SimBackend, load_scenario

# sim phase -> the recorded phase it is calibrated from
RECORDED = {
    "idle_context": "idle_context",
    "compute": "compute_matmul_bf16",
    "memory": "memory_copy_2gib",
    "overhead": "overhead_tiny_kernels",
    "io": "pcie_h2d_1gib",
    "inference": "inference_mlp_batch256",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorded_means(phase: str) -> dict[str, float]:
    rows = [s for s in load_trace() if s["phase"] == phase]
    settled = [s for s in rows if s["t"] - rows[0]["t"] > 1.5]

    def mean(values: list[float]) -> float:
        return statistics.fmean(v for v in values if not math.isnan(v))

    return {
        "power": mean([s["fields"]["power_instant"]["value"] / 1000 for s in settled]),
        "util_gpu": mean([s["util_gpu"] / 100 for s in settled]),
        "sm_active": mean([s["gpm"]["sm_util"] / 100 for s in settled]),
        "tensor": mean([s["gpm"]["any_tensor_util"] / 100 for s in settled]),
        "dram": mean([s["gpm"]["dram_bw_util"] / 100 for s in settled]),
    }


def one_phase(phase: str, model: str = "h100-sxm", **gpu: object) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": 3,
            "gpus": [
                {
                    "model": model,
                    "processes": [{"pid": 100, "memory_bytes": 8 << 30}],
                    "schedule": [{"phase": phase, "seconds": 600}],
                    **gpu,
                }
            ],
        }
    )


def sample(backend: SimBackend, clock: Clock, seconds: int, step: float = 1.0) -> list:
    readings = []
    for _ in range(int(seconds / step)):
        clock.now += step
        readings.append(backend.read(0, ReadPlan()))
    return readings


@pytest.mark.parametrize("phase", sorted(RECORDED))
def test_h100_phases_match_the_recording(phase: str) -> None:
    clock = Clock()
    backend = SimBackend(one_phase(phase), clock=clock)
    backend.open()
    readings = sample(backend, clock, 120)
    want = recorded_means(RECORDED[phase])
    power = statistics.fmean(r.power_instant_watts for r in readings)
    assert power == pytest.approx(want["power"], rel=0.03), "power"
    assert statistics.fmean(r.utilization_gpu for r in readings) == pytest.approx(
        want["util_gpu"], abs=0.03
    )
    gpm = [r.gpm for r in readings]
    assert statistics.fmean(g.sm_active for g in gpm) == pytest.approx(want["sm_active"], abs=0.03)
    assert statistics.fmean(g.tensor_active for g in gpm) == pytest.approx(want["tensor"], abs=0.03)
    if not math.isnan(want["dram"]):
        assert statistics.fmean(g.dram_active for g in gpm) == pytest.approx(want["dram"], abs=0.03)


def test_energy_counter_agrees_with_the_power_a_scrape_sees() -> None:
    clock = Clock()
    backend = SimBackend(load_scenario(None), clock=clock)
    backend.open()
    for index in range(4):
        readings = []
        for _ in range(300):
            clock.now += 1.0
            readings.append(backend.read(index, ReadPlan()))
        counter = readings[-1].energy_counter_joules - readings[0].energy_counter_joules
        no_counter = [
            r.__class__(**{**_fields(r), "energy_counter_joules": None}) for r in readings
        ]
        integrated = cumulative_energy(no_counter)[-1]
        assert counter == pytest.approx(integrated, rel=0.02), index


def _fields(reading: object) -> dict:
    return {name: getattr(reading, name) for name in reading.__slots__}  # type: ignore[attr-defined]


def test_models_scale_to_their_power_envelope() -> None:
    for model, idle_w, max_w in (("l4", 16.0, 72.0), ("a100-80gb", 55.0, 400.0)):
        clock = Clock()
        idle = SimBackend(one_phase("idle", model), clock=clock)
        idle.open()
        busy = SimBackend(one_phase("compute", model), clock=clock)
        busy.open()
        idle_mean = statistics.fmean(r.power_watts for r in sample(idle, clock, 60))
        busy_mean = statistics.fmean(r.power_watts for r in sample(busy, clock, 60))
        assert idle_mean == pytest.approx(idle_w, rel=0.03)
        assert busy_mean == pytest.approx(max_w, rel=0.03)


def test_capabilities_follow_the_model() -> None:
    backend = SimBackend(load_scenario(None))
    infos = backend.open()
    by_model = {i.name: i for i in infos}
    assert by_model["NVIDIA H100 80GB HBM3"].supports(Capability.GPM)
    assert not by_model["NVIDIA A100-SXM4-80GB"].supports(Capability.GPM)
    assert not by_model["NVIDIA L4"].supports(Capability.POWER_INSTANT)
    l4 = by_model["NVIDIA L4"]
    assert backend.read(l4.index, ReadPlan()).power_instant_watts is None


def test_gpu_without_energy_counter() -> None:
    backend = SimBackend(one_phase("compute", energy_counter=False))
    [info] = backend.open()
    assert not info.supports(Capability.ENERGY_COUNTER)
    assert backend.read(0, ReadPlan()).energy_counter_joules is None


def test_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list:
        clock = Clock()
        backend = SimBackend(load_scenario(None), clock=clock, seed=seed)
        backend.open()
        readings = []
        for i in range(40):
            clock.now += 0.5
            readings.append(backend.read(i % 4, ReadPlan()))
        return readings

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_demo_scenario_has_busy_idle_holding_memory_and_memory_bound_gpus() -> None:
    clock = Clock()
    backend = SimBackend(load_scenario(None), clock=clock)
    backend.open()
    clock.now += 10
    busy, stranded, membound, _l4 = (backend.read(i, ReadPlan()) for i in range(4))
    assert busy.gpm.sm_active > 0.9 and busy.gpm.tensor_active > 0.85
    assert stranded.utilization_gpu == 0 and stranded.processes
    assert stranded.processes[0].used_memory_bytes == 30 << 30
    assert stranded.power_watts > 100  # a held context costs power
    assert membound.utilization_memory > 0.95 and membound.gpm is None  # A100: no GPM


def test_phases_follow_the_schedule_and_loop() -> None:
    scenario = Scenario.model_validate(
        {
            "gpus": [
                {
                    "processes": [{"pid": 1}],
                    "schedule": [
                        {"phase": "idle", "seconds": 10},
                        {"phase": "compute", "seconds": 10},
                    ],
                }
            ]
        }
    )
    clock = Clock()
    backend = SimBackend(scenario, clock=clock)
    backend.open()
    start = clock.now
    seen = {}
    for at in (5, 15, 25, 35):
        clock.now = start + at
        r = backend.read(0, ReadPlan())
        seen[at] = (r.utilization_gpu > 0.5, len(r.processes))
    assert seen == {5: (False, 0), 15: (True, 1), 25: (False, 0), 35: (True, 1)}


def test_bursty_alternates_compute_and_idle_with_a_context() -> None:
    clock = Clock()
    bursty = {"phase": "bursty", "seconds": 100, "on_seconds": 2, "off_seconds": 3}
    scenario = Scenario.model_validate(
        {"gpus": [{"processes": [{"pid": 1}], "schedule": [bursty]}]}
    )
    backend = SimBackend(scenario, clock=clock)
    backend.open()
    start = clock.now
    busy = []
    for tenth in range(0, 500):
        clock.now = start + tenth / 10
        busy.append(backend.read(0, ReadPlan()).utilization_gpu > 0.5)
    assert sum(busy) / len(busy) == pytest.approx(0.4, abs=0.01)


def test_mig_layout_and_process_split() -> None:
    scenario = Scenario.model_validate(
        {
            "gpus": [
                {
                    "model": "h100-sxm",
                    "mig": ["1g.10gb"] * 7,
                    "processes": [
                        {"pid": 10 + i, "memory_bytes": (i + 1) << 30, "mig_instance": i}
                        for i in range(7)
                    ],
                    "schedule": [{"phase": "inference", "seconds": 60}],
                }
            ]
        }
    )
    backend = SimBackend(scenario)
    [info] = backend.open()
    assert info.mig_enabled and info.supports(Capability.MIG) and not info.supports(Capability.GPM)
    r = backend.read(0, ReadPlan(process_utilization=ProcessUtilizationPolicy.ALWAYS))
    assert [m.gpu_instance_id for m in r.mig_devices] == list(range(1, 8))
    assert all(m.memory_total_bytes == 10 << 30 for m in r.mig_devices)
    assert [m.memory_used_bytes for m in r.mig_devices] == [(i + 1) << 30 for i in range(7)]
    assert sum(p.sm_utilization for p in r.processes) == pytest.approx(r.utilization_gpu, abs=0.01)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus: [{model: h200-nvl}]", "gpus.0: Value error, unknown model 'h200-nvl'"),
        ("gpus: [{schedule: [{phase: sleeping, seconds: 3}]}]", "gpus.0.schedule.0.phase"),
        ("gpus: [{mig: [9g.90gb]}]", "no MIG profile '9g.90gb'"),
        ("gpus: [{mig: [4g.40gb, 4g.40gb]}]", "more than 7 compute slices"),
        ("gpus: [{colour: red}]", "gpus.0.colour: Extra inputs are not permitted"),
        ("gpus: []", "gpus: List should have at least 1 item"),
        ("gpus: [{schedule: [{phase: idle, seconds: -1}]}]", "gpus.0.schedule.0.seconds"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_throttling_and_a_lost_gpu_can_be_simulated() -> None:
    from greenops_exporter.backends.base import DeviceReadError

    clock = Clock()
    backend = SimBackend(
        one_phase("compute", throttle=["hw_thermal_slowdown"], lost_after_seconds=30), clock=clock
    )
    backend.open()
    clock.now += 10
    reading = backend.read(0, ReadPlan())
    assert reading.clock_event_reasons == 0x4 | 0x40  # power cap (compute) and thermal
    clock.now += 30
    with pytest.raises(DeviceReadError, match="lost"):
        backend.read(0, ReadPlan())


def test_processes_churn_through_identities() -> None:
    clock = Clock()
    backend = SimBackend(
        Scenario.model_validate(
            {
                "gpus": [
                    {
                        "processes": [{"pid": 10, "pod": "job"}, {"pid": 20, "pod": "web"}],
                        "schedule": [{"phase": "compute", "seconds": 600}],
                        "churn_identities": 3,
                        "churn_every_seconds": 10,
                    }
                ]
            }
        ),
        clock=clock,
    )
    backend.open()
    start = clock.now
    seen = []
    for at in (1, 11, 21, 31):
        clock.now = start + at
        seen.append([(p.pid, p.pod) for p in backend.read(0, ReadPlan()).processes])
    assert seen == [
        [(10, "job-0"), (20, "web-0")],
        [(12, "job-1"), (22, "web-1")],
        [(14, "job-2"), (24, "web-2")],
        [(10, "job-0"), (20, "web-0")],  # cycles through 3 identities
    ]
