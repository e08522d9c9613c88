"""`analyze`: a recording, window by window, through the live exporter's own analysis."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.carbon import embodied_grams, operational_grams
from greenops_exporter.analysis.energy import cumulative_energy, energy_source
from greenops_exporter.analysis.windows import WindowReport, analyze_window
from greenops_exporter.backends.probe_file import PROBE_FILE
from greenops_exporter.backends.replay import Recording, load_recording
from greenops_exporter.commands.as_exported import ExportedWindow, exported_series, exported_window
from greenops_exporter.config.errors import ConfigError, UsageError
from greenops_exporter.config.models import AnalysisConfig, EmbodiedConfig
from greenops_exporter.config.sources import file_and_environment
from greenops_exporter.config.validation import format_validation_error
from greenops_exporter.facts.gpu_models import model_by_name


class _AnalysisOnly(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)


def load_analysis_config(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> AnalysisConfig:
    """The analysis section alone, from the same file and GREENOPS_ANALYSIS__* variables
    (`analyze` reads nothing else): a bad `collect` key or variable, there for `serve`, is
    no reason for an offline command to fail."""
    data, origins = file_and_environment(path, os.environ if environ is None else environ)
    try:
        section = _AnalysisOnly.model_validate({"analysis": data.get("analysis") or {}})
    except ValidationError as exc:
        message = format_validation_error(exc, origin=origins, model=_AnalysisOnly)
        raise ConfigError(message) from exc
    return section.analysis


def parse_window(text: str) -> tuple[float, float, float | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--window {text!r}: expected START:END or START:END:OPS")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"--window {text!r}: START, END and OPS must be numbers") from None
    if not all(math.isfinite(x) for x in numbers):  # nan compares false to everything
        raise UsageError(f"--window {text!r}: START, END and OPS must be finite numbers")
    start, end = numbers[0], numbers[1]
    if end <= start:
        raise UsageError(f"--window {text!r}: END must be after START")
    ops = numbers[2] if len(numbers) == 3 else None
    if ops is not None and ops <= 0:
        raise UsageError(f"--window {text!r}: OPS must be positive")
    return start, end, ops


def check_window(text: str, start: float, end: float, times: Sequence[float]) -> None:
    """A window must lie in the recording; it may overshoot either end by one sample
    interval (phase edges are timed apart from the samples), never more: a window clamped
    to a sliver, or to nothing, would report energy and joules per operation of a span the
    user did not ask for."""
    step = statistics.median(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else 0
    if start < times[0] - step or end > times[-1] + step or start >= times[-1]:
        raise UsageError(
            f"--window {text!r}: outside the recording, which spans t = {times[0]:g} to "
            f"{times[-1]:g} s (a window may pass either end by one sample interval, {step:g} s)"
        )


def gpu_identity(recording: Recording) -> dict[str, Any]:
    """Which GPU the recording is of, and from where: the model decides MIG right-sizing
    (and so the advice) and the embodied footprint, so it is never assumed silently."""
    name = str(recording.identity.get("name") or "") or None
    model = model_by_name(name or "")
    probe = None if recording.probe is None else str(recording.probe)
    notice = ""
    if probe is None:
        notice = (
            f"no {PROBE_FILE} beside {recording.path}: the GPU model is unknown, so no MIG "
            "right-sizing (and advice without it) and the default embodied footprint; "
            "`record` writes one"
        )
        summary = f"unknown (no {PROBE_FILE} beside the recording): no MIG right-sizing"
    elif model is None:
        notice = (
            f"{probe} names GPU {name!r}, which is not in the model table: no MIG "
            "right-sizing and the default embodied footprint"
        )
        summary = f"{name} (from {probe}; not in the model table): no MIG right-sizing"
    else:
        mig = "MIG right-sizing on" if model.mig_profiles else "no MIG on this model"
        summary = f"{model.name} ({model.key}, from {probe}; {mig})"
    simulated = recording.identity.get("simulated") is True  # `record` on the sim says so
    if simulated:
        summary += "; simulated readings, not a real GPU's"
    return {
        "name": name,
        "model": None if model is None else model.key,
        "identity_from": probe,
        "mig_rightsizing": bool(model is not None and model.mig_profiles),
        "simulated": simulated,
        "summary": summary,
        "notice": notice,
    }


def window_json(report: WindowReport, carbon: tuple[float, float] | None = None) -> dict[str, Any]:
    """The stable `analyze --json` contract: later releases add keys, never rename."""
    w = report.energy
    return {
        "start": w.start,
        "end": w.end,
        "seconds": round(w.seconds, 6),
        "energy_joules": round(w.energy_joules, 3),
        "mean_power_watts": round(w.mean_power_watts, 3),
        "class_share": {c.value: round(report.class_share[c], 4) for c in BottleneckClass},
        "energy_joules_by_class": {
            c.value: round(report.energy_by_class[c], 3) for c in BottleneckClass
        },
        "idle_energy_joules": {
            "no_holder": round(report.idle_joules_no_holder, 3),
            "with_holder": round(report.idle_joules_with_holder, 3),
        },
        "stranded_memory_bytes_peak": report.stranded_bytes_peak,
        "samples": report.samples,
        "ops": report.ops,
        "joules_per_op": report.joules_per_op,
        "mig_rightsize": (
            None
            if report.right_size is None
            else {
                "profile": report.right_size.profile,
                "freed_ratio": round(report.right_size.freed_ratio, 4),
            }
        ),
        "recommendation": (
            None
            if report.advice is None
            else {"code": report.advice.code, "text": report.advice.text}
        ),
        **(
            {}
            if carbon is None
            else {
                "carbon_grams_operational": round(carbon[0], 4),
                "carbon_grams_embodied": round(carbon[1], 4),
            }
        ),
    }


def analyze(
    recording_path: Path,
    windows_text: Sequence[str],
    as_json: bool,
    analysis: AnalysisConfig | None = None,
    intensity: float | None = None,
    pue: float = 1.0,
    embodied_table: Mapping[str, EmbodiedConfig] | None = None,
    as_exported: tuple[float, float] | None = None,
) -> int:
    """`as_exported` = (collect interval, anchor interval): also run the live estimator."""
    analysis = analysis or AnalysisConfig()
    windows = [parse_window(w) for w in windows_text]
    recording = load_recording(recording_path)
    readings = recording.readings
    times = recording.times
    cumulative = cumulative_energy(readings)
    for text, (start, end, _) in zip(windows_text, windows, strict=True):
        check_window(text, start, end, times)
    if not windows:
        windows = [(times[0], times[-1], None)]
    gpu = gpu_identity(recording)
    if gpu["notice"]:
        log.warning("%s", gpu["notice"])
    model = model_by_name(gpu["name"] or "")
    reports = [
        analyze_window(
            readings,
            cumulative,
            start,
            end,
            ops,
            model,
            analysis.bottleneck.thresholds(),
            analysis.waste(),
        )
        for start, end, ops in windows
    ]
    source = energy_source(readings).value
    table = embodied_table or {"default": EmbodiedConfig(kg=164.0)}
    keys = [model.key if model else "", str(recording.identity.get("name", "")), "default"]
    embodied = next((table[k] for k in keys if k in table), EmbodiedConfig(kg=164.0))
    carbon = [
        None
        if intensity is None
        else (
            operational_grams(r.energy.energy_joules, pue, intensity),
            embodied_grams(embodied.kg, embodied.lifetime_years, r.energy.seconds),
        )
        for r in reports
    ]
    exported: list[ExportedWindow | None] = [None] * len(reports)
    if as_exported is not None:
        series = exported_series(recording_path, *as_exported)
        exported = [
            exported_window(series, times, cumulative, start, end) for start, end, _ in windows
        ]
    if as_json:
        document = {
            "recording": str(recording_path),
            "energy_source": source,
            "gpu": {k: v for k, v in gpu.items() if k != "notice"},
            "windows": [
                {**window_json(r, c), **_exported_json(e)}
                for r, c, e in zip(reports, carbon, exported, strict=True)
            ],
        }
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"recording: {recording_path}  ({len(readings)} samples, "
        f"{times[-1] - times[0]:.1f} s, energy from {source})"
    )
    print(f"gpu: {gpu['summary']}")
    print(
        f"{'start':>8} {'end':>8} {'seconds':>8} {'energy J':>10} {'mean W':>7} "
        f"{'J/op':>10}  class mix"
    )
    for r in reports:
        w = r.energy
        mix = ", ".join(
            f"{c.value} {share:.0%}"
            for c, share in sorted(r.class_share.items(), key=lambda kv: -kv[1])
            if share > 0
        )
        per_op = "-" if r.joules_per_op is None else f"{r.joules_per_op:.4g}"
        print(
            f"{w.start:8.2f} {w.end:8.2f} {w.seconds:8.2f} {w.energy_joules:10.1f} "
            f"{w.mean_power_watts:7.1f} {per_op:>10}  {mix}"
        )
        if r.samples == 0:
            print(f"{'':>8} no sample inside the window: no class mix, right-sizing or advice")
        idle = r.idle_joules_no_holder + r.idle_joules_with_holder
        if idle > 0:
            print(
                f"{'':>8} idle {idle:.1f} J ({r.idle_joules_with_holder:.1f} J while a "
                "process held the GPU)"
            )
        if r.right_size is not None:
            print(
                f"{'':>8} fits MIG {r.right_size.profile} "
                f"(would free {r.right_size.freed_ratio:.0%} of the GPU)"
            )
        if r.advice is not None:
            print(f"{'':>8} advice: {r.advice.text}")
    if as_exported is not None:
        _print_exported(exported, *as_exported)
    for r, c in zip(reports, carbon, strict=True):
        if c is not None:
            print(
                f"{r.energy.start:8.2f} carbon {c[0]:.3f} g operational "
                f"({intensity:g} g/kWh, PUE {pue:g}) + {c[1]:.3f} g embodied"
            )
    return 0


log = logging.getLogger(__name__)


def _exported_json(e: ExportedWindow | None) -> dict[str, Any]:
    if e is None:
        return {}
    return {
        "exported_energy_joules": round(e.exported_joules, 3),
        "exported_span": [e.start, e.end],
        "exported_counter_energy_joules": round(e.counter_joules, 3),
        "exported_error_ratio": round(e.error_ratio, 6),
    }


def _print_exported(
    exported: Sequence[ExportedWindow | None], collect: float, anchor: float
) -> None:
    every = "every cycle" if anchor <= collect else f"every {anchor:g} s"
    print(
        f"as exported (collection every {collect:g} s, energy counter read {every}; "
        "each window from its first to its last cycle):"
    )
    print(f"{'start':>8} {'end':>8} {'exported J':>11} {'counter J':>10} {'error':>7}")
    for e in exported:
        if e is None:
            print(f"{'':>8} (window shorter than two collection cycles)")
            continue
        print(
            f"{e.start:8.2f} {e.end:8.2f} {e.exported_joules:11.1f} {e.counter_joules:10.1f} "
            f"{e.error_ratio:+7.2%}"
        )
