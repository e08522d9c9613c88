"""A simulated GPU fleet over a month, written by the exporter's own encoder (OpenMetrics,
with timestamps added) for `promtool tsdb create-blocks-from openmetrics`, and the totals
that the `report` command must find in it.

Pods come and go on every GPU (each holds a GPU for hours to days; some GPUs wait unheld
between them), one namespace mostly idles (notebooks, with stranded memory), one GPU runs a
process outside any pod, one is a MIG right-sizing candidate, forecasts are recorded in the
second half only, one inference server runs, and one node's exporter restarts midway (all
its counters back to 0). The generator accrues each step's increments itself, so every
truth below is a sum of what it wrote, not a figure read back.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backfill import append_samples
from greenops_exporter.analysis.attribution import PodKey
from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.carbon import GreenestWindow
from greenops_exporter.analysis.energy import EnergySource
from greenops_exporter.analysis.inference import ModelEfficiency, ModelTotals
from greenops_exporter.analysis.rightsizing import RightSize
from greenops_exporter.backends.base import DeviceInfo, ProcessReading
from greenops_exporter.collect.snapshot import (
    Costs,
    DeviceSnapshot,
    InferenceSnapshot,
    PodCosts,
    Snapshot,
    Waste,
)
from greenops_exporter.metrics.encode import Exposition
from greenops_exporter.sources.carbon_intensity import Intensity

NAMESPACES = ("ml-train", "ml-infer", "research", "notebooks", "batch", "platform")
TEAMS = {"ml-train": "ml", "ml-infer": "ml", "research": "science", "notebooks": "science"}
START = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
PUE, ENERGY_PRICE, RENTAL_PRICE, CURRENCY = 1.2, 0.25, 2.5, "USD"
EMBODIED_PER_SECOND = 164000.0 / (4 * 365.25 * 86400)
WATTS = {"busy": 600.0, "overhead": 350.0, "idle": 90.0, "unheld": 60.0}
STRANDED_BYTES = 40 * 2**30
MIG_GPU, MIG_PROFILE, MIG_FREED = ("node-0", 6), "3g.40gb", 0.5
OUTSIDE_GPU = ("node-0", 7)  # a process outside any pod, all month
INFERENCE_GPU = ("node-1", 0)
# the families the report reads, and the GPU identity it joins for --by gpu_model
FAMILIES = (
    "greenops_gpu_info",
    "greenops_gpu_energy_joules_total",
    "greenops_gpu_idle_energy_joules_total",
    "greenops_gpu_carbon_grams_total",
    "greenops_gpu_cost_total",
    "greenops_gpu_waste_cost_total",
    "greenops_gpu_holder_cost_total",
    "greenops_gpu_holder_seconds_total",
    "greenops_pod_energy_joules_total",
    "greenops_pod_carbon_grams_total",
    "greenops_pod_cost_total",
    "greenops_pod_waste_cost_total",
    "greenops_pod_gpu_seconds_total",
    "greenops_pod_gpu_idle_seconds_total",
    "greenops_process_stranded_memory_bytes",
    "greenops_gpu_mig_rightsize_info",
    "greenops_gpu_mig_rightsize_freed_ratio",
    "greenops_greenest_window_saving_ratio",
    "greenops_inference_energy_joules_total",
    "greenops_inference_requests_total",
    "greenops_inference_tokens_total",
)


@dataclass(frozen=True)
class FleetSpec:
    nodes: int = 4
    gpus_per_node: int = 8
    days: int = 30
    step_seconds: int = 3600
    seed: int = 21
    restart_node: str = "node-2"

    @property
    def steps(self) -> int:
        return self.days * 86400 // self.step_seconds

    @property
    def restart_step(self) -> int:
        return self.steps * 5 // 9

    @property
    def end(self) -> int:
        return START + self.steps * self.step_seconds


def intensity(t: int) -> float:
    return 250.0 + 100.0 * math.sin(2 * math.pi * (t % 86400) / 86400)


def saving_ratio(t: int) -> float:
    return 0.3 + 0.1 * math.cos(2 * math.pi * (t % 86400) / 86400)


@dataclass
class Truth:
    """Totals over the period (from START, exclusive, to the end), as the generator accrued
    them; money in the currency, energy in joules, carbon in grams, time in seconds."""

    fleet: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_namespace: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    by_pod: dict[tuple[str, str], dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    pod_gpus: dict[tuple[str, str], set[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    idle_by_pod_day: dict[tuple[str, str], dict[int, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    daily_cost: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    series: int = 0
    samples: int = 0


@dataclass
class _Gpu:
    host: str
    index: int
    schedule: list[tuple[str, str] | None]  # per step: (namespace, pod) or None
    states: list[str]  # per step: busy | overhead | idle | unheld
    acc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    pods: dict[PodKey, dict[str, float]] = field(default_factory=dict)
    pod_seen: dict[PodKey, int] = field(default_factory=dict)

    @property
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            self.index,
            f"GPU-{self.host}-{self.index:02d}",
            "NVIDIA H100 80GB HBM3" if self.index < 6 else "NVIDIA A100-SXM4-80GB",
            f"00000000:{self.index + 0x18:02X}:00.0",
            80 * 2**30,
            700.0,
            "hopper",
            False,
            "550.54",
            frozenset(),
        )


def _plan(spec: FleetSpec, rng: random.Random, host: str, index: int) -> _Gpu:
    per_hour = 3600 // spec.step_seconds
    schedule: list[tuple[str, str] | None] = []
    states: list[str] = []
    serial = 0
    while len(schedule) < spec.steps + 1:
        if (host, index) == OUTSIDE_GPU:
            schedule.append(("", ""))
            states.append("busy")
            continue
        gap = rng.choice([0, 0, 0, 2, 5, 12, 24]) * per_hour
        schedule += [None] * gap
        states += ["unheld"] * gap
        namespace = rng.choice(NAMESPACES)
        serial += 1
        pod = f"{namespace}-{host[-1]}{index}-{serial}"
        idle_share = 0.8 if namespace == "notebooks" else 0.15
        for _ in range(rng.randint(6, 120)):
            roll = rng.random()
            state = (
                "idle" if roll < idle_share else "overhead" if roll < idle_share + 0.1 else "busy"
            )
            schedule += [(namespace, pod)] * per_hour
            states += [state] * per_hour
    if host == spec.restart_node:  # drained for the exporter's restart (no pod across it:
        # a pod counter restarting at or above its last value could not be told from growth)
        for step in range(spec.restart_step - 3, spec.restart_step + 1):
            schedule[step], states[step] = None, "unheld"
    return _Gpu(host, index, schedule[: spec.steps + 1], states[: spec.steps + 1])


def _accrue(spec: FleetSpec, gpu: _Gpu, step: int, t: int, truth: Truth, count: bool) -> None:
    """One step's increments into the GPU's (and its pod's) counters, and into the truth
    when the step lies inside the period (`count`)."""
    seconds = float(spec.step_seconds)
    state, holder = gpu.states[step], gpu.schedule[step]
    joules = WATTS[state] * seconds
    kwh = joules / 3.6e6
    parts = {
        "energy": joules,
        "operational": kwh * PUE * intensity(t),
        "embodied": EMBODIED_PER_SECOND * seconds,
        "energy_cost": kwh * PUE * ENERGY_PRICE,
        "rental_cost": seconds / 3600 * RENTAL_PRICE,
    }
    cost = parts["energy_cost"] + parts["rental_cost"]
    cls = {"busy": "compute", "overhead": "overhead"}.get(state, "idle")
    kind = "none" if holder is None else "process" if holder == ("", "") else "pod"
    inc: dict[str, float] = {
        **parts,
        f"waste_{cls}": cost if cls in ("idle", "overhead") else 0.0,
        f"idle_energy_{'none' if kind == 'none' else 'process'}": joules if cls == "idle" else 0,
        f"holder_cost_{kind}": cost,
        f"holder_seconds_{kind}": seconds,
    }
    if (gpu.host, gpu.index) == MIG_GPU:
        inc["mig_cost"] = cost * MIG_FREED
        inc["mig_grams"] = (parts["operational"] + parts["embodied"]) * MIG_FREED
        inc["mig_seconds"] = seconds
    for key, value in inc.items():
        gpu.acc[key] += value
    pod_inc: dict[str, float] = {}
    if kind == "pod":
        assert holder is not None
        key = PodKey(holder[0], holder[1], "main")
        pod_inc = {
            "energy": joules,
            "operational": parts["operational"],
            "embodied": parts["embodied"],
            "cost": cost,
            f"waste_{cls}": inc.get(f"waste_{cls}", 0.0),
            "gpu_seconds": seconds,
            "idle_seconds": seconds if cls == "idle" else 0.0,
            "stranded_byte_seconds": 0.0,
        }
        account = gpu.pods.setdefault(key, defaultdict(float))
        for name, value in pod_inc.items():
            account[name] += value
        gpu.pod_seen[key] = step
        if _stranded(gpu, step):
            pod_inc["stranded_byte_seconds"] = STRANDED_BYTES * seconds
    if not count:
        return
    for name, value in inc.items():
        truth.fleet[name] += value
    truth.daily_cost[(t - START - 1) // 86400] += cost
    if pod_inc and holder is not None:
        for name, value in pod_inc.items():
            truth.by_namespace[holder[0]][name] += value
            truth.by_pod[holder][name] += value
        truth.pod_gpus[holder].add((gpu.host, gpu.index))
        truth.idle_by_pod_day[holder][(t - START - 1) // 86400] += pod_inc["idle_seconds"]
        if step >= spec.steps // 2:  # forecasts recorded: work that could have waited
            truth.by_namespace[holder[0]]["greenest_saving"] += pod_inc["operational"] * (
                saving_ratio(t)
            )


def _stranded(gpu: _Gpu, step: int) -> bool:
    """Notebook pods idle for a second step running hold stranded memory."""
    holder = gpu.schedule[step]
    return (
        holder is not None
        and holder[0] == "notebooks"
        and step > 0
        and gpu.schedule[step - 1] == holder
        and gpu.states[step] == "idle"
        and gpu.states[step - 1] == "idle"
    )


def _device(gpu: _Gpu, step: int) -> DeviceSnapshot:
    a = gpu.acc
    state = gpu.states[step]
    holder = gpu.schedule[step]
    stranded: tuple[ProcessReading, ...] = ()
    if _stranded(gpu, step) and holder is not None:
        stranded = (
            ProcessReading(
                100, STRANDED_BYTES, "python", None, None, None, "main", holder[1], holder[0]
            ),
        )
    cls = {"busy": BottleneckClass.COMPUTE, "overhead": BottleneckClass.OVERHEAD}.get(
        state, BottleneckClass.IDLE
    )
    right = RightSize(MIG_PROFILE, MIG_FREED) if (gpu.host, gpu.index) == MIG_GPU else None
    pods = gpu.pods
    return DeviceSnapshot(
        info=gpu.info,
        up=True,
        reading=None,
        energy_joules_total=a["energy"],
        energy_source=EnergySource.COUNTER,
        energy_counter_resets=0,
        errors={},
        last_success_unix=None,
        read_seconds=None,
        waste=Waste(
            bottleneck=cls,
            idle_joules_no_holder=a["idle_energy_none"],
            idle_joules_with_holder=a["idle_energy_process"],
            stranded=stranded,
            right_size=right,
        ),
        pod_energy={k: v["energy"] for k, v in pods.items()},
        costs=Costs(
            a["operational"],
            a["embodied"],
            a["energy_cost"],
            a["rental_cost"],
            {BottleneckClass.IDLE: a["waste_idle"], BottleneckClass.OVERHEAD: a["waste_overhead"]},
            CURRENCY,
        ),
        pod_costs={
            k: PodCosts(v["operational"], v["embodied"], v["cost"]) for k, v in pods.items()
        },
        pod_waste_cost={
            (k, c): v[f"waste_{c.value}"]
            for k, v in pods.items()
            for c in (BottleneckClass.IDLE, BottleneckClass.OVERHEAD)
            if f"waste_{c.value}" in v
        },
        holder_cost={h: a[f"holder_cost_{h}"] for h in ("pod", "process", "none")},
        holder_seconds={h: a[f"holder_seconds_{h}"] for h in ("pod", "process", "none")},
        pod_gpu_seconds={k: v["gpu_seconds"] for k, v in pods.items()},
        pod_gpu_idle_seconds={k: v["idle_seconds"] for k, v in pods.items()},
    )


def write_fleet(spec: FleetSpec, out_dir: Path) -> tuple[list[Path], Truth]:
    """One OpenMetrics file per family (families must not interleave in a file), and the
    truth; every sample stamped with its step's time."""
    rng = random.Random(spec.seed)
    hosts = [f"node-{n}" for n in range(spec.nodes)]
    gpus = {h: [_plan(spec, rng, h, i) for i in range(spec.gpus_per_node)] for h in hosts}
    expositions = {h: Exposition(h) for h in hosts}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: (out_dir / f"{name}.om").open("w") for name in FAMILIES}
    headers_written: set[str] = set()
    truth = Truth()
    series: set[str] = set()
    inference = ModelTotals()
    for step in range(spec.steps + 1):
        t = START + step * spec.step_seconds
        for host in hosts:
            if host == spec.restart_node and step == spec.restart_step:
                for gpu in gpus[host]:  # the exporter restarts: every counter from 0
                    gpu.acc.clear()
                    gpu.pods.clear()
                    gpu.pod_seen.clear()
            for gpu in gpus[host]:
                if step > 0:
                    _accrue(spec, gpu, step, t, truth, count=True)
                for key in [k for k, seen in gpu.pod_seen.items() if step - seen > 2]:
                    del gpu.pods[key], gpu.pod_seen[key]  # expired, as ExpiringTotals does
            inference_snaps: tuple[InferenceSnapshot, ...] = ()
            if host == INFERENCE_GPU[0]:
                gpu = gpus[host][INFERENCE_GPU[1]]
                if step > 0 and gpu.states[step] == "busy":
                    joules = WATTS["busy"] * spec.step_seconds
                    requests = 40.0 * spec.step_seconds
                    inference = ModelTotals(
                        inference.energy_joules + joules,
                        inference.requests + requests,
                        inference.prompt_tokens + 300 * requests,
                        inference.generation_tokens + 200 * requests,
                    )
                    truth.fleet["inference_energy"] += joules
                    truth.fleet["inference_requests"] += requests
                    truth.fleet["inference_tokens"] += 500 * requests
                model = ModelEfficiency("llama-8b", inference, None, None, None)
                inference_snaps = (InferenceSnapshot("vllm", "vllm", 0.0, (model,)),)
            greenest = None
            if step >= spec.steps // 2:
                now = intensity(t)
                greenest = GreenestWindow(
                    datetime.fromtimestamp(t, UTC), now * (1 - saving_ratio(t)), now
                )
            snap = Snapshot(
                backend="sim",
                backend_reason="report test fleet",
                backend_up=True,
                devices=tuple(_device(g, step) for g in gpus[host]),
                cycles_total=step + 1,
                inference=inference_snaps,
                intensity=Intensity(intensity(t), "static", "GB"),
                greenest=greenest,
            )
            text = expositions[host].encode(snap, openmetrics=True, names=FAMILIES).decode()
            truth.samples += append_samples(text, t, files, headers_written, series)
    kube = out_dir / "kube_namespace_labels.om"  # as kube-state-metrics writes it
    with kube.open("w") as handle:
        handle.write(
            "# HELP kube_namespace_labels Kubernetes labels converted to Prometheus labels.\n"
        )
        handle.write("# TYPE kube_namespace_labels gauge\n")
        for step in range(spec.steps + 1):
            t = START + step * spec.step_seconds
            for namespace, team in TEAMS.items():
                handle.write(
                    f'kube_namespace_labels{{namespace="{namespace}",label_team="{team}"}} 1 {t}\n'
                )
        handle.write("# EOF\n")
    for handle in files.values():
        handle.write("# EOF\n")
        handle.close()
    truth.series = len(series)
    return [*(out_dir / f"{name}.om" for name in FAMILIES), kube], truth
