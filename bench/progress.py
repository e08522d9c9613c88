"""Progress of a long benchmark on a terminal: one line on stderr, rewritten in place.

Quiet when stderr is not a terminal (CI logs, pipes), so that the report alone is kept.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, steps: int, seconds: float, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.on = self.stream.isatty()
        self.steps, self.seconds = steps, seconds
        self.done_steps = 0
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        """Announce the step now starting."""
        self.done_steps += 1
        if not self.on:
            return
        left = max(self.seconds - (time.monotonic() - self.started), 0.0)
        self.stream.write(
            f"\r\x1b[K[{self.done_steps}/{self.steps}] {what} (about {left / 60:.0f} min left)"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.on:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
