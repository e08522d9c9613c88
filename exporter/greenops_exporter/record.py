"""`record`: live readings into the fixtures format, one file a GPU, on the serving clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .backends.base import Backend, DeviceInfo
from .backends.dcgm import cache_hint
from .backends.probe_file import PROBE_FILE, load_probe_file, probe_static
from .backends.recording_format import sample_from_reading
from .collect import Collector, CollectSettings, Snapshot
from .errors import UsageError
from .interrupt import on_stop_signals, signal_name


def record_paths(out: str, count: int) -> list[Path]:
    """One file per GPU: `{gpu}` in the name is replaced by the index; without it one GPU
    writes FILE itself and several write FILE's stem + `-gpu<index>` + its suffix
    (trace.jsonl -> trace-gpu0.jsonl, trace-gpu1.jsonl, ...)."""
    if "{gpu}" in out:
        return [Path(out.replace("{gpu}", str(i))) for i in range(count)]
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-gpu{i}{path.suffix}") for i in range(count)]


def check_out_dir(out: str) -> None:
    """Refuse --out in a directory that is not there before the backend starts (NVML's init,
    a scrape of dcgm-exporter), not after."""
    directory = Path(out.replace("{gpu}", "0")).parent
    if not directory.is_dir():
        raise UsageError(f"--out {out}: directory {directory} does not exist")


def write_probes(paths: Sequence[Path], infos: Sequence[DeviceInfo | None]) -> list[Path]:
    """Name each recording's GPU in the probe.json beside it (its `recordings` entry), so
    that `analyze` and `replay` know the model; entries of other recordings are kept. None
    removes a file's entry: `record` starting over a file, which it empties."""
    by_file: dict[Path, dict[str, Any]] = {}
    changed: set[Path] = set()
    for path, info in zip(paths, infos, strict=True):
        probe = path.parent / PROBE_FILE
        if probe not in by_file:
            try:
                by_file[probe] = load_probe_file(probe)
            except ValueError as exc:
                raise UsageError(f"{exc} (record adds its GPUs to it: fix or remove it)") from exc
        entries = by_file[probe].get("recordings")
        if info is not None:
            by_file[probe].setdefault("recordings", {})[path.name] = probe_static(info)
        elif not isinstance(entries, dict) or entries.pop(path.name, None) is None:
            continue
        changed.add(probe)
    for probe in changed:
        probe.write_text(json.dumps(by_file[probe], indent=1) + "\n")
    return sorted(changed)


async def record(
    backend: Backend,
    reason: str,
    settings: CollectSettings,
    duration_seconds: float,
    out: str,
) -> int:
    """Write live readings in the fixtures format (one JSON object a line, one file a GPU),
    reading the energy counter on every sample: a recording is meant to be the truth."""
    collector = Collector(backend, replace(settings, energy_anchor_seconds=0.0), reason)
    snap = await collector.collect_once()  # which devices: the samples start on the grid
    if not snap.backend_up or not snap.devices:
        await collector.close()
        raise UsageError(f"nothing to record: backend {backend.name} has no device ({reason})")
    paths = record_paths(out, len(snap.devices))
    infos = [d.info for d in snap.devices]
    try:
        write_probes(paths, [None] * len(paths))  # refuse a bad one now; forget old entries
        files = [path.open("w") for path in paths]
    except BaseException:
        await collector.close()
        raise
    first: list[float | None] = [None] * len(paths)
    last: list[float | None] = [None] * len(paths)
    lines = [0] * len(paths)
    repeats = [0] * len(paths)
    probes: set[Path] = set()

    async def write(snap: Snapshot) -> None:
        """Each cycle's samples reach the files at once (flushed), so a stop at any moment
        keeps them; a file's probe.json entry comes with its first sample, never before."""
        started = []
        for i, device in enumerate(snap.devices):
            r = device.reading
            if not device.up or r is None:
                continue
            if r.timestamp == last[i]:  # the source handed back its last sample again
                repeats[i] += 1
                continue
            if first[i] is None:
                first[i] = r.timestamp
                started.append(i)
            last[i] = r.timestamp
            t = r.timestamp - (first[i] or 0.0)
            sample = sample_from_reading(r, t, snap.cycle_unix or 0.0)
            files[i].write(json.dumps(sample) + "\n")
            files[i].flush()
            lines[i] += 1
        if started:
            probes.update(write_probes([paths[i] for i in started], [infos[i] for i in started]))

    # the serving loop's own fixed-rate clock: samples stay on the interval's grid, and a
    # cycle that overruns its tick skips (and counts) ticks instead of drifting
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:  # SIGTERM, SIGINT, SIGHUP: stop, keep what is written
        stopped_by.append(signum)
        stop.set()

    try:
        with on_stop_signals(on_signal):
            asyncio.get_running_loop().call_later(duration_seconds, stop.set)
            await collector.run(stop, after_cycle=write)
    finally:
        for f in files:
            f.close()
        await collector.close()
    if stopped_by:
        print(f"interrupted by {signal_name(stopped_by[0])}: the samples so far are kept")
    if collector.skipped_cycles:
        print(
            f"{collector.skipped_cycles} ticks of {settings.interval_seconds:g} s skipped: a "
            "cycle took longer than the interval (the recording has gaps there)"
        )
    for path, n, same in zip(paths, lines, repeats, strict=True):
        print(f"{path}: {n} samples")
        if same:
            why = f": {cache_hint(settings.interval_seconds)}" if backend.name == "dcgm" else ""
            print(f"  {same} of {n + same} cycles read the same sample again{why}")
    for probe in sorted(probes):
        print(f"{probe}: the GPUs' identity (model, uuid) for analyze and replay")
    return 128 + stopped_by[0] if stopped_by else 0
