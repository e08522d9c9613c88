"""Which queries the report sends, and their answers as plain numbers per bucket.

One range query per figure (per chunk of the period): the server evaluates and aggregates,
so the count grows with the figures asked, never with GPUs or pods."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenops_exporter.commands.report.client import Client
from greenops_exporter.commands.report.period import Period
from greenops_exporter.commands.report.promql import (
    GPU_ID,
    bucket_increase,
    bucket_integral,
    pod_energy_cost,
    present_seconds,
    selector,
    weighted_increase,
)

Key = tuple[str, ...]
Values = list[float | None]  # one per bucket; None: no answer for it
CHUNK_SECONDS = 31 * 86400  # one call per figure for a month; longer periods in chunks
MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points

SAVING = "greenops_greenest_window_saving_ratio"
FREED = "greenops_gpu_mig_rightsize_freed_ratio"


@dataclass(frozen=True)
class Figure:
    name: str
    labels: tuple[str, ...]  # the result's key, in this order
    expr: str


@dataclass
class Raw:
    """The answers: per figure, per key, per bucket; and the instant look-ups."""

    series: dict[str, dict[Key, Values]] = field(default_factory=dict)
    gpu_models: dict[Key, str] = field(default_factory=dict)  # (hostname, gpu, uuid) -> model
    mig_profiles: dict[Key, str] = field(default_factory=dict)
    bad_values: int = 0  # NaN or infinite answers, dropped and said

    def get(self, figure: str) -> dict[Key, Values]:
        return self.series.get(figure, {})


def figures(p: Period, match: str, group: tuple[str, ...]) -> list[Figure]:
    s, b = p.step, p.bucket

    def inc(name: str, metric: str, labels: tuple[str, ...], extra: str = "") -> Figure:
        return Figure(name, labels, bucket_increase(metric, match, labels, s, b, extra))

    pod_gpu = ("namespace", "pod", *GPU_ID)
    operational = 'scope="operational"'
    return [
        inc("fleet_cost", "greenops_gpu_cost_total", ("kind", "currency")),
        inc("fleet_waste", "greenops_gpu_waste_cost_total", ("class",)),
        inc("holder_cost", "greenops_gpu_holder_cost_total", ("holder",)),
        inc("holder_seconds", "greenops_gpu_holder_seconds_total", ("holder",)),
        inc("fleet_energy", "greenops_gpu_energy_joules_total", ()),
        inc("idle_energy", "greenops_gpu_idle_energy_joules_total", ("holder",)),
        inc("fleet_carbon", "greenops_gpu_carbon_grams_total", ("scope",)),
        Figure(
            "resets",
            (),
            f"sum(resets({selector('greenops_gpu_cost_total', match)}[{b}s]))",
        ),
        inc("group_cost", "greenops_pod_cost_total", (*group, "currency")),
        Figure("group_energy_cost", group, pod_energy_cost(match, group, s, b)),
        inc("group_waste", "greenops_pod_waste_cost_total", (*group, "class")),
        inc("group_energy", "greenops_pod_energy_joules_total", group),
        inc("group_seconds", "greenops_pod_gpu_seconds_total", group),
        inc("group_idle_seconds", "greenops_pod_gpu_idle_seconds_total", group),
        inc("group_carbon", "greenops_pod_carbon_grams_total", (*group, "scope")),
        Figure(
            "group_stranded",
            group,
            bucket_integral("greenops_process_stranded_memory_bytes", match, group, s, b),
        ),
        Figure(
            "group_greenest",
            group,
            weighted_increase(
                "greenops_pod_carbon_grams_total", match, group, s, b, SAVING, (), operational
            ),
        ),
        Figure("forecast_seconds", (), present_seconds(selector(SAVING, match), (), s, b)),
        Figure(
            "mig_cost",
            GPU_ID,
            weighted_increase(
                "greenops_gpu_cost_total", match, GPU_ID, s, b, selector(FREED, match), GPU_ID
            ),
        ),
        Figure(
            "mig_grams",
            GPU_ID,
            weighted_increase(
                "greenops_gpu_carbon_grams_total",
                match,
                GPU_ID,
                s,
                b,
                selector(FREED, match),
                GPU_ID,
            ),
        ),
        Figure("mig_seconds", GPU_ID, present_seconds(selector(FREED, match), GPU_ID, s, b)),
        inc("pod_idle_seconds", "greenops_pod_gpu_idle_seconds_total", pod_gpu),
        inc("pod_idle_cost", "greenops_pod_waste_cost_total", ("namespace", "pod"), 'class="idle"'),
        inc("inference_energy", "greenops_inference_energy_joules_total", ("source", "model")),
        inc("inference_requests", "greenops_inference_requests_total", ("source", "model")),
        inc("inference_tokens", "greenops_inference_tokens_total", ("source", "model")),
    ]


def fetch(
    client: Client,
    p: Period,
    match: str,
    group: tuple[str, ...],
    progress: Callable[[int, int], None] | None = None,
) -> Raw:
    """Every figure over the period, chunk by chunk, and the GPUs' models and MIG advice."""
    raw = Raw()
    wanted = figures(p, match, group)
    per_chunk = max(1, min(CHUNK_SECONDS // p.bucket, MAX_POINTS))
    chunks = [(i, min(i + per_chunk, p.buckets)) for i in range(0, p.buckets, per_chunk)]
    total, done = len(wanted) * len(chunks) + 2, 0
    for figure in wanted:
        out: dict[Key, Values] = {}
        for first, last in chunks:
            result = client.range(
                figure.expr, p.bucket_end(first), p.bucket_end(last - 1), p.bucket
            )
            for item in result:
                key = tuple(item.get("metric", {}).get(label, "") for label in figure.labels)
                values = out.setdefault(key, [None] * p.buckets)
                for t, text in item.get("values", ()):
                    index = p.index(float(t))
                    value = float(text)
                    if not math.isfinite(value):
                        raw.bad_values += 1
                    elif 0 <= index < p.buckets:
                        values[index] = (values[index] or 0.0) + value
            done += 1
            if progress is not None:
                progress(done, total)
        raw.series[figure.name] = out
    span = f"{p.end - p.start}s"
    info = client.instant(
        f"max by ({', '.join(GPU_ID)}, model) "
        f"(last_over_time({selector('greenops_gpu_info', match)}[{span}]))",
        p.end,
    )
    raw.gpu_models = _labels(info, GPU_ID, "model")
    profiles = client.instant(
        f"max by ({', '.join(GPU_ID)}, profile) "
        f"(last_over_time({selector('greenops_gpu_mig_rightsize_info', match)}[{span}]))",
        p.end,
    )
    raw.mig_profiles = _labels(profiles, GPU_ID, "profile")
    if progress is not None:
        progress(total, total)
    return raw


def namespace_labels(client: Client, p: Period, name: str) -> dict[str, str]:
    """namespace -> the value of its label `name`, from kube-state-metrics'
    kube_namespace_labels (label_<name>); empty when it exports none."""
    label = f"label_{name}"
    found = client.instant(
        f"max by (namespace, {label}) (last_over_time(kube_namespace_labels[{p.end - p.start}s]))",
        p.end,
    )
    return {k[0]: v for k, v in _labels(found, ("namespace",), label).items() if v and k[0]}


def _labels(result: list[dict[str, Any]], key: tuple[str, ...], label: str) -> dict[Key, str]:
    out: dict[Key, str] = {}
    for item in result:
        metric = item.get("metric", {})
        out[tuple(metric.get(k, "") for k in key)] = metric.get(label, "")
    return out


def terminal_progress(done: int, total: int) -> None:
    """Progress on a terminal only (never into a pipe or a log)."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\rreport: {done}/{total} queries", end=end, file=sys.stderr, flush=True)
