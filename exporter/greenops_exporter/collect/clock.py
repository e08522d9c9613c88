"""The collection clock: ticks on a fixed grid (start + k x interval), never drifting.

A cycle that overruns its tick does not make the next one late: the ticks it overran are
skipped and counted, and collection resumes on the grid. Integrals (energy, class time)
need evenly spaced readings, and a record at 10 Hz must keep its 10 Hz.
"""

from __future__ import annotations

import math


class FixedRate:
    def __init__(self, interval_seconds: float, start: float) -> None:
        self.interval = interval_seconds
        self.start = start
        self.ticks = 0  # ticks on the grid so far (0 = the start)
        self.skipped = 0  # ticks missed because a cycle ran past them

    def delay_to_next(self, now: float) -> float:
        """Seconds to wait from `now` until the next tick that is still ahead."""
        self.ticks += 1
        due = self.start + self.ticks * self.interval
        if due < now:
            missed = math.floor((now - due) / self.interval) + 1
            self.skipped += missed
            self.ticks += missed
            due = self.start + self.ticks * self.interval
        return due - now
