"""The side-by-side table `make bench` prints: every figure for both exporters and their ratio."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serve_bench import Result, Window

# nvitop-exporter 1.7.2 measured on a real H100 (README, Performance: 2026-11-23, psutil
# CPU times, 1 s interval): the calibration the stand-in's figure for it is held against
NVITOP_REAL_H100 = {"none": 5.0, "scraped": 7.3}
MODE_NAMES = {"none": "no scrapes", "scraped": "scraped 1/s"}


def table_ms(window: Window, costs: dict[str, Any]) -> float:
    calls: dict[str, float] = costs["calls_ms"]
    default = float(costs["default_ms"])
    return sum(n * calls.get(k, default) for k, n in window.charged.items())


def per_second(result: Result, mode: str, costs: dict[str, Any]) -> dict[str, list[float]]:
    """ms of CPU per second in each window: the process's, the table's NVML, and the rest."""
    cpu = [w.cpu * 1e3 / w.seconds for w in result.windows[mode]]
    nvml = [table_ms(w, costs) / w.seconds for w in result.windows[mode]]
    return {"cpu": cpu, "nvml": nvml, "own": [c - n for c, n in zip(cpu, nvml, strict=True)]}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else float("nan")


def calls_per_second(result: Result, mode: str) -> dict[str, float]:
    windows = result.windows[mode]
    seconds = sum(w.seconds for w in windows)
    out: dict[str, float] = {}
    for w in windows:
        for name, n in w.calls.items():
            if not name.endswith(":call"):
                out[name] = out.get(name, 0.0) + n / seconds
    return out


def print_report(
    results: list[Result],
    costs: dict[str, Any],
    standin: dict[int, float],
    minutes: float,
    window: float,
    reps: int,
    out: Callable[[str], None] = print,
) -> None:
    by = {(r.exporter, r.gpus, r.load): r for r in results}
    configs = sorted({(r.gpus, r.load) for r in results}, key=lambda c: (c[0], c[1] != "idle"))
    both = any(r.exporter == "nvitop" for r in results)
    out(
        f"\ngreenops-exporter serve beside nvitop-exporter 1.7.2, same stand-in, same run "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {reps} x {window:g} s "
        f"windows per mode; {minutes:.1f} min)"
    )
    out("CPU: psutil user + system of each process and its children, ms per second of window,")
    out("  median (min-max of the repetitions); NVML: what the cost table charged for its calls;")
    out("  own: CPU minus NVML; ratio: greenops / nvitop of the medians.")
    goals: list[tuple[str, bool]] = []
    for gpus, load in configs:
        g = by.get(("greenops", gpus, load))
        n = by.get(("nvitop", gpus, load))
        out(f"\n{gpus} GPU{'s' if gpus > 1 else ''}, {load}")
        out(f"  {'':<28} {'greenops':>20} {'nvitop':>20} {'ratio':>6}")
        for mode in ("none", "scraped"):
            gs = per_second(g, mode, costs) if g else {}
            ns = per_second(n, mode, costs) if n else {}
            for key, what in (("cpu", "process CPU"), ("nvml", "  NVML (table)"), ("own", "  own")):
                gv, nv = gs.get(key, []), ns.get(key, [])
                out(
                    f"  {what + ', ' + MODE_NAMES[mode]:<28} {spread(gv):>20} {spread(nv):>20} "
                    f"{ratio(median(gv), median(nv)):>6}"
                )
            if g and n:
                gc, nc = median(gs["cpu"]), median(ns["cpu"])
                go, no = median(gs["own"]), median(ns["own"])
                goals.append((f"{gpus} {load} {MODE_NAMES[mode]}: CPU below nvitop's", gc < nc))
                goals.append(
                    (f"{gpus} {load} {MODE_NAMES[mode]}: own <= half nvitop's own", go <= no / 2)
                )
            if g and load == "idle" and mode == "none" and gpus in (1, 8):
                limit = 1.0 if gpus == 1 else 4.0
                goals.append(
                    (f"{gpus} idle no scrapes: CPU <= {limit} ms/s", median(gs["cpu"]) <= limit)
                )
        rows: list[tuple[str, Callable[[Result], float], str]] = [
            ("RSS MiB", lambda r: r.rss / 2**20, ".1f"),
            ("scrape p50 ms", lambda r: percentile(r.latencies, 0.5) * 1e3, ".2f"),
            ("scrape p99 ms", lambda r: percentile(r.latencies, 0.99) * 1e3, ".2f"),
            ("series", lambda r: float(r.series), ".0f"),
            ("bytes per scrape", lambda r: float(r.body_bytes), ".0f"),
        ]
        for what, get, fmt in rows:
            gv2 = get(g) if g else float("nan")
            nv2 = get(n) if n else float("nan")
            out(f"  {what:<28} {gv2:>20{fmt}} {nv2:>20{fmt}} {ratio(gv2, nv2) if both else '-':>6}")
        out(f"  (RSS includes the stand-in and its recording: {standin[gpus]:.1f} MiB alone)")
        gcalls = calls_per_second(g, "none") if g else {}
        ncalls = calls_per_second(n, "none") if n else {}
        head = f"{'greenops':>9} {'nvitop':>9} {'ratio':>6}"
        out(f"  NVML calls per second, no scrapes {'':<8} {head}")
        for name in sorted(set(gcalls) | set(ncalls)):
            a, b = gcalls.get(name, 0.0), ncalls.get(name, 0.0)
            out(f"    {name:<40} {a:>9.2f} {b:>9.2f} {ratio(a, b):>6}")
    one_idle = by.get(("nvitop", 1, "idle"))
    if one_idle is not None:
        out("\nCalibration: nvitop-exporter 1.7.2 on 1 idle H100, this model against the GPU")
        for mode, real in NVITOP_REAL_H100.items():
            model = median(per_second(one_idle, mode, costs)["cpu"])
            out(
                f"  {MODE_NAMES[mode]:<12} model {model:.2f} ms/s, measured on a real H100 "
                f"{real:.1f} ms/s (real / model {real / model:.2f})"
            )
        out(
            "  The cost table leaves out part of a real process's CPU (see NVML-NOTES and the\n"
            "  README): absolute CPU on a real GPU is unknown until measured on one\n"
            "  (bench/nvml_floor.py); the ratios between the exporters are what this shows."
        )
    if goals:
        out("\nGoals (issue 18), on this run's medians:")
        for what, met in goals:
            out(f"  {'met    ' if met else 'NOT met'} {what}")
