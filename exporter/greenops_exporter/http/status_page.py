"""The human-readable status page at `/`: one row per GPU, server-rendered, no external
assets, refreshing itself. Rendering is a pure function of the Snapshot."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.collect import DeviceSnapshot, Snapshot

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2733;background:#f7f9fb}
h1{font-size:1.3rem;margin:0 0 .3rem} p{margin:.2rem 0 1rem;color:#4a5a6a}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002;margin-bottom:1.2rem}
th,td{padding:.45rem .8rem;text-align:right;border-bottom:1px solid #e4e9ee}
th{background:#eef2f6;font-weight:600} td.l,th.l{text-align:left}
.idle{color:#b35c00}.compute{color:#1b7f3b}.memory{color:#1d5fb4}.io{color:#7a3fb4}
.overhead{color:#b3261e}.stale{color:#b3261e;font-weight:600}
p.down{color:#fff;background:#b3261e;padding:.5rem .8rem;border-radius:4px}
nav a{margin-right:1rem}
"""


class EnergyToday:
    """Energy since midnight UTC (or since the exporter started, if later) per GPU.

    Fed every collection cycle, so that the day's baseline is the counter at the first
    cycle after midnight, whenever the page is looked at."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall = wall_clock
        self._start: dict[str, tuple[str, float]] = {}
        self.joules: dict[str, float] = {}

    def observe(self, snap: Snapshot) -> None:
        day = datetime.fromtimestamp(self._wall(), UTC).date().isoformat()
        for device in snap.devices:
            uuid = device.info.uuid
            seen = self._start.get(uuid)
            if seen is None:  # the counter started with the exporter, today
                seen = self._start[uuid] = (day, 0.0)
            elif seen[0] != day:
                seen = self._start[uuid] = (day, device.energy_joules_total)
            self.joules[uuid] = device.energy_joules_total - seen[1]


def _waste_share(d: DeviceSnapshot) -> float | None:
    joules = d.waste.class_joules
    total = sum(joules.values())
    if total <= 0:
        return None
    wasted = joules.get(BottleneckClass.IDLE, 0.0) + joules.get(BottleneckClass.OVERHEAD, 0.0)
    return wasted / total


def _fmt(value: float | None, fmt: str, unit: str) -> str:
    """The value with its unit, or `n/a` alone: a bare unit (`- %`) reads as a broken page."""
    return "n/a" if value is None else f"{format(value, fmt)} {unit}"


_ENERGY_UNITS = (("MWh", 3.6e9), ("kWh", 3.6e6), ("Wh", 3600.0))


def human_energy(joules: float) -> str:
    """Three significant digits in J, Wh, kWh or MWh: the largest unit that shows at least
    1 (Wh from 1000 J on, 0.278 Wh, so that no number reaches four digits)."""
    for unit, size in _ENERGY_UNITS:
        value = float(f"{joules / size:.3g}")  # rounded first: 999.96 Wh is 1 kWh
        if value >= 1 or (unit == "Wh" and float(f"{joules:.3g}") >= 1000):
            return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"
    return f"{joules:.3g} J"


def _backend_down(snap: Snapshot) -> str:
    """While the backend reads no GPU: that it is down, why and since when, in words."""
    if snap.backend_up:
        return ""
    since = (
        datetime.fromtimestamp(snap.backend_down_since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if snap.backend_down_since is not None
        else "the start"
    )
    why = html.escape(snap.backend_down_reason or "not started yet")
    return (
        f'<p class="down" id="backend-down">backend {html.escape(snap.backend)} is down '
        f"since {since}: {why} (retried; no GPU is read meanwhile)</p>"
    )


def render_status(
    snap: Snapshot, energy_today: Mapping[str, float], version: str, refresh_seconds: int = 10
) -> str:
    rows = []
    for d in snap.devices:
        r = d.reading if d.up else None
        cls = d.waste.bottleneck.value if d.waste.bottleneck and d.up else None
        state = (
            f'<span class="{cls}">{cls}</span>'
            if cls
            else f'<span class="stale">stale: {html.escape(d.stale_reason)}</span>'
        )
        waste = _waste_share(d)
        grams = d.costs.operational_grams + d.costs.embodied_grams
        rows.append(
            "<tr>"
            f"<td>{d.info.index}</td>"
            f'<td class="l">{html.escape(d.info.name)}</td>'
            f'<td class="l">{state}</td>'
            f"<td>{_fmt(r.best_power_watts() if r else None, '.0f', 'W')}</td>"
            f"<td>{human_energy(energy_today.get(d.info.uuid, 0.0))}</td>"
            f"<td>{_fmt(None if waste is None else waste * 100, '.0f', '%')}</td>"
            f"<td>{grams:.1f} g</td>"
            f'<td class="l">{html.escape(d.waste.advice.text if d.waste.advice else "")}</td>'
            "</tr>"
        )
    inference = []
    for source in snap.inference:
        for m in source.models:
            inference.append(
                "<tr>"
                f'<td class="l">{html.escape(source.name)}</td>'
                f'<td class="l">{html.escape(m.model)}</td>'
                f"<td>{_fmt(m.joules_per_request, '.4g', 'J')}</td>"
                f"<td>{_fmt(m.joules_per_generated_token, '.4g', 'J')}</td>"
                f"<td>{_fmt(m.sci_grams_per_request, '.4g', 'g')}</td>"
                "</tr>"
            )
    intensity = snap.intensity
    grid = (
        f"{intensity.grams_per_kwh:.0f} gCO2e/kWh in {html.escape(intensity.zone)} "
        f"({html.escape(intensity.source)})"
        if intensity
        else "unknown"
    )
    inference_table = (
        '<h2>Inference</h2><table id="inference"><tr><th class="l">source</th>'
        '<th class="l">model</th><th>per request</th><th>per generated token</th>'
        f"<th>SCI per request</th></tr>{''.join(inference)}</table>"
        if inference
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_seconds}">
<title>greenops-exporter</title><style>{STYLE}</style></head>
<body><h1>greenops-exporter {html.escape(version)}</h1>
<p>Backend <b>{html.escape(snap.backend)}</b> ({html.escape(snap.backend_reason)}) ·
grid {grid} · {f"{len(snap.devices)} GPU(s)" if snap.backend_up else "backend down"} ·
cycle {snap.cycles_total}</p>
{_backend_down(snap)}
<nav><a href="/metrics">/metrics</a><a href="/healthz">/healthz</a>
<a href="/readyz">/readyz</a></nav>
<h2>GPUs</h2>
<table id="gpus"><tr><th>GPU</th><th class="l">model</th><th class="l">bottleneck</th>
<th>power</th><th>energy today</th><th>waste</th><th>carbon</th><th class="l">advice</th></tr>
{"".join(rows)}</table>
{inference_table}
</body></html>
"""
