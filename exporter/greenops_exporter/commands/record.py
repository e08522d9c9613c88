"""`record`: live readings into the fixtures format, one file a GPU, on the serving clock."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from greenops_exporter.backends.base import Backend, DeviceInfo
from greenops_exporter.backends.dcgm import cache_hint
from greenops_exporter.backends.probe_file import PROBE_FILE, load_probe_file, probe_static
from greenops_exporter.backends.recording_format import sample_from_reading
from greenops_exporter.collect import Collector, CollectSettings, Snapshot
from greenops_exporter.commands.interrupt import on_stop_signals, signal_name
from greenops_exporter.config.errors import UsageError


def record_paths(out: str, count: int) -> list[Path]:
    """One file per GPU: `{gpu}` in the name is replaced by the index; a directory gets
    `gpu<index>.jsonl` inside it; otherwise one GPU writes FILE itself and several write
    FILE's stem + `-gpu<index>` + its suffix (trace.jsonl -> trace-gpu0.jsonl, ...)."""
    if "{gpu}" in out:
        return [Path(out.replace("{gpu}", str(i))) for i in range(count)]
    path = Path(out)
    if path.is_dir():  # files inside it, never beside it (`--out /tmp` wrote /tmp-gpu0…)
        return [path / f"gpu{i}.jsonl" for i in range(count)]
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-gpu{i}{path.suffix}") for i in range(count)]


def check_out(out: str, paths: Sequence[Path] = ()) -> None:
    """Refuse an --out that cannot be written before the backend starts (NVML's init, a
    scrape of dcgm-exporter), not after; once the GPUs are known, their files too."""
    if not out.strip():
        raise UsageError("--out '': expected a file (trace.jsonl) or a directory")
    target = Path(out.replace("{gpu}", "0"))
    if out.endswith("/") and not target.is_dir():  # meant as a directory, not a file name
        raise UsageError(f"--out {out}: directory {target} does not exist")
    directory = target if target.is_dir() and "{gpu}" not in out else target.parent
    if not directory.is_dir():
        said = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"--out {out}: directory {directory} {said}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory {directory} is not writable")
    files = list(paths) or ([] if directory == target else [target])
    for path in [directory / PROBE_FILE, *files]:
        if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
            what = "is not writable" if path.is_file() else "is not a regular file"
            raise UsageError(f"--out {out}: {path} {what}")


def write_probes(
    paths: Sequence[Path], infos: Sequence[DeviceInfo | None], simulated: bool = False
) -> list[Path]:
    """Name each recording's GPU in the probe.json beside it (its `recordings` entry), so
    that `analyze` and `replay` know the model; entries of other recordings are kept. None
    removes a file's entry: `record` starting over a file, which it empties. A simulated
    GPU's entry says so: its name is a real board's."""
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
            entry = probe_static(info) | ({"simulated": True} if simulated else {})
            by_file[probe].setdefault("recordings", {})[path.name] = entry
        elif not isinstance(entries, dict) or entries.pop(path.name, None) is None:
            continue
        changed.add(probe)
    for probe in changed:
        probe.write_text(json.dumps(by_file[probe], indent=1) + "\n")
    return sorted(changed)


class Progress:
    """One line on a terminal, rewritten at most once a second: a 4 h recording would
    otherwise print nothing until it ends. Silent where stderr is not a terminal (a log, a
    pipe), so that nothing there fills with carriage returns."""

    def __init__(self, duration_seconds: float, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.on = self.stream.isatty()
        self.duration = duration_seconds
        self.start = time.monotonic()
        self.shown = -1.0

    def show(self, samples: int) -> None:
        elapsed = time.monotonic() - self.start
        if not self.on or elapsed - self.shown < 1.0:
            return
        self.shown = elapsed
        left = max(self.duration - elapsed, 0.0)
        self.stream.write(
            f"\rrecording: {_clock(elapsed)} of {_clock(self.duration)}, {samples} samples, "
            f"{_clock(left)} left \x1b[K"
        )
        self.stream.flush()

    def end(self) -> None:
        if self.on and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


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
    simulated = backend.name == "sim"
    try:
        check_out(out, paths)
        write_probes(paths, [None] * len(paths))  # refuse a bad one now; forget old entries
        files = [path.open("w") for path in paths]
    except BaseException:
        await collector.close()
        raise
    if simulated:  # the sim's GPUs have real names: say so before anyone analyses them
        print(f"recording simulated GPUs, not real ones ({reason})")
    first: list[float | None] = [None] * len(paths)
    last: list[float | None] = [None] * len(paths)
    lines = [0] * len(paths)
    repeats = [0] * len(paths)
    probes: set[Path] = set()
    failed: list[tuple[Path, OSError]] = []
    progress = Progress(duration_seconds)
    stop = asyncio.Event()

    async def write(snap: Snapshot) -> None:
        """Each cycle's samples reach the files at once (flushed), so a stop at any moment
        keeps them; a file's probe.json entry comes with its first sample, never before.
        The first write that fails (a full disk) stops the recording: what is written
        stays."""
        if failed:
            return
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
            try:
                files[i].write(json.dumps(sample) + "\n")
                files[i].flush()
            except OSError as exc:
                failed.append((paths[i], exc))
                stop.set()
                return
            lines[i] += 1
        if started:
            entries = [paths[i] for i in started]
            try:
                probes.update(write_probes(entries, [infos[i] for i in started], simulated))
            except OSError as exc:
                failed.append((entries[0].parent / PROBE_FILE, exc))
                stop.set()
                return
        progress.show(max(lines))

    # the serving loop's own fixed-rate clock: samples stay on the interval's grid, and a
    # cycle that overruns its tick skips (and counts) ticks instead of drifting
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:  # SIGTERM, SIGINT, SIGHUP: stop, keep what is written
        stopped_by.append(signum)
        stop.set()

    try:
        with on_stop_signals(on_signal):
            asyncio.get_running_loop().call_later(duration_seconds, stop.set)
            await collector.run(stop, after_cycle=write)
    finally:
        progress.end()
        for path, f in zip(paths, files, strict=True):
            try:
                f.close()
            except OSError as exc:  # what a failed flush left in the buffer
                if not failed:
                    failed.append((path, exc))
        await collector.close()
    if failed:
        where, error = failed[0]
        print(
            f"greenops-exporter: cannot write {where}: {error.strerror or error}: recording "
            "stopped, the samples written before are kept",
            file=sys.stderr,
        )
    if stopped_by:
        print(f"interrupted by {signal_name(stopped_by[0])}: the samples so far are kept")
    if collector.skipped_cycles:
        print(
            f"{collector.skipped_cycles} ticks of {settings.interval_seconds:g} s skipped: a "
            "cycle took longer than the interval (the recording has gaps there)"
        )
    kind = " of a simulated GPU" if simulated else ""
    for path, n, same in zip(paths, lines, repeats, strict=True):
        print(f"{path}: {n} samples{kind}")
        if same:
            why = f": {cache_hint(settings.interval_seconds)}" if backend.name == "dcgm" else ""
            print(f"  {same} of {n + same} cycles read the same sample again{why}")
    for probe in sorted(probes):
        said = " (marked simulated)" if simulated else ""
        print(f"{probe}: the GPUs' identity (model, uuid) for analyze and replay{said}")
    if stopped_by:
        return 128 + stopped_by[0]
    return 1 if failed else 0
