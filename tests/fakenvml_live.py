"""The stand-in pynvml played live: one phase of a recording looped at wall-clock speed.

A benchmark of the serving process needs readings that move with real time, as a GPU's
do, for as long as it runs: the row in force follows the clock (`time.monotonic` unless
given), and each pass of the loop moves the energy counter and the timestamps of the
driver's power samples and process-utilisation samples on by what one pass spans, so that
counters stay monotonic and no sample is served twice. The recorded pids may be replaced
by a live process's (the exporters look a GPU process up in /proc).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

import pynvml as real

from fakenvml import SAMPLE_BUFFER, SAMPLE_PERIOD_US, FakeNvml, sample_array


def phase_rows(trace: list[dict[str, Any]], phase: str) -> range:
    """The rows of one recorded phase (they are contiguous)."""
    rows = [i for i, s in enumerate(trace) if s.get("phase") == phase]
    if not rows:
        raise ValueError(f"the recording has no phase {phase!r}")
    return range(rows[0], rows[-1] + 1)


def idle_rows(trace: list[dict[str, Any]]) -> range:
    """The recording's first rows, before any process held the GPU: an idle GPU."""
    end = next((i for i, s in enumerate(trace) if s["procs"]), len(trace))
    return range(0, end)


class LiveFakeNvml(FakeNvml):
    """`devices` GPUs all playing `rows` of `trace` in a loop, from the moment it is made."""

    def __init__(
        self,
        trace: list[dict[str, Any]],
        rows: range,
        devices: int = 1,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(trace=trace, devices=devices)
        if len(rows) < 2:
            raise ValueError("a loop needs at least two rows")
        self.rows = rows
        self.pid = pid
        self._clock = clock
        self._start = clock()
        self._offsets = [float(trace[r]["t"]) - float(trace[rows[0]]["t"]) for r in rows]
        # the driver samples taken during the loop's rows (the first row's are older): (stamp
        # µs, mW, row); one pass spans the rows' recorded time plus one sample period
        self._loop_samples = [p for p in self._power if rows[0] < p[2] <= rows[-1]]
        self._loop_rows = [row for _stamp, _mw, row in self._loop_samples]
        self.loop_seconds = self._offsets[-1] + SAMPLE_PERIOD_US / 1e6
        self.loop_us = round(self.loop_seconds * 1e6)
        first, last = trace[rows[0]], trace[rows[-1]]
        recorded = float(last["t"]) - float(first["t"])
        self.loop_mj = round(
            (int(last["energy_mj"]) - int(first["energy_mj"])) * (self.loop_seconds / recorded)
        )
        self._built: tuple[tuple[int, int], dict[str, Any]] | None = None

    def position(self) -> tuple[int, int]:
        """(pass of the loop, recorded row) in force now."""
        passes, within = divmod(self._clock() - self._start, self.loop_seconds)
        j = max(bisect.bisect_right(self._offsets, within) - 1, 0)
        return int(passes), self.rows[j]

    @property  # type: ignore[override]
    def cursor(self) -> int:
        return self.position()[1]

    @cursor.setter
    def cursor(self, value: int) -> None:
        """The row follows the clock: a set cursor is ignored (FakeNvml sets it to 0)."""

    def sample(self) -> dict[str, Any]:
        key = self.position()
        if self._built is not None and self._built[0] == key:
            return self._built[1]
        passes, row = key
        s = dict(self.trace[row])
        shift_mj, shift_us = passes * self.loop_mj, passes * self.loop_us
        s["energy_mj"] = int(s["energy_mj"]) + shift_mj
        fields = dict(s["fields"])
        if "value" in fields.get("total_energy", {}):
            fields["total_energy"] = {
                **fields["total_energy"],
                "value": fields["total_energy"]["value"] + shift_mj,
            }
        s["fields"] = fields
        if self.pid is not None:
            s["procs"] = [{**p, "pid": self.pid} for p in s["procs"]]
        if isinstance(s["proc_util"], list):
            s["proc_util"] = [
                {**u, "ts": u["ts"] + shift_us, "pid": self.pid or u["pid"]} for u in s["proc_util"]
            ]
        self._built = (key, s)
        return s

    def nvmlDeviceGetSamples(self, handle: Any, kind: int, last_seen_us: int) -> Any:
        """The loop's driver samples newer than `last_seen_us` up to the row in force, each
        pass's stamped one pass later than the last; NOT_FOUND when none is newer."""
        self._enter("nvmlDeviceGetSamples", handle)
        if kind != real.NVML_TOTAL_POWER_SAMPLES or not self._loop_samples:
            self._raise(real.NVML_ERROR_NOT_SUPPORTED)
        passes, row = self.position()
        count = len(self._loop_samples)
        end = passes * count + bisect.bisect_right(self._loop_rows, row)
        out: list[tuple[int, int]] = []
        for v in range(end - 1, max(end - SAMPLE_BUFFER, 0) - 1, -1):
            p, i = divmod(v, count)
            stamp, mw, _row = self._loop_samples[i]
            stamp += p * self.loop_us
            if stamp <= last_seen_us:
                break
            out.append((stamp, mw))
        if not out:
            self._raise(real.NVML_ERROR_NOT_FOUND)
        out.reverse()
        return real.NVML_VALUE_TYPE_UNSIGNED_INT, sample_array(out)
