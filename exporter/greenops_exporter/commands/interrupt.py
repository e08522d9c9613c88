"""SIGTERM, SIGINT and SIGHUP for `measure` and `record`: end as a shell's job would.

A CI job's timeout sends SIGTERM, a terminal's Ctrl-C SIGINT, a closed terminal SIGHUP.
Python's defaults would end these commands with a traceback (SIGINT) or with nothing at all
(SIGTERM, SIGHUP), losing the report or the samples and leaving `measure`'s command
running as an orphan. So they stop, keep and report what they have, and exit 128 + the
signal's number, as a shell reports a job ended by it (143, 130, 129).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence

import psutil

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long `measure` waits for its interrupted command before it kills the command's process
# group: well inside GitHub Actions' 10 s from cancelling to SIGKILL (SIGINT, 7.5 s, SIGTERM,
# 2.5 s, SIGKILL), so the report is out before the runner's own SIGKILL.
GRACE_SECONDS = 5.0


def exit_status(returncode: int) -> int:
    """A process's exit status as a shell reports it: 128 + n when signal n ended it."""
    return 128 - returncode if returncode < 0 else returncode


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[int], None]) -> Iterator[None]:
    """Call `callback(signum)` on each stop signal while inside. A signal the command was
    started with ignored (`nohup`, a non-interactive shell's `&`) stays ignored."""
    loop = asyncio.get_running_loop()
    handled = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    for sig in handled:
        loop.add_signal_handler(sig, callback, int(sig))
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is left in the process group."""
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):  # it ended while we looked
            continue
    return False


class Job:
    """A command in a process group of its own, so that a signal forwarded to it reaches all
    it started (the `sleep` of `sh -c 'sleep 45; …'` too), and after an interruption none
    of it outlives `measure`: what is left after GRACE_SECONDS is killed."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.signals: list[int] = []  # the stop signals received, in order
        self._kill_at: float | None = None

    @property
    def interrupted(self) -> int | None:
        """The first stop signal received, None when there was none."""
        return self.signals[0] if self.signals else None

    def on_signal(self, signum: int) -> None:
        """Forward every stop signal (a second one too: GitHub's SIGTERM after its SIGINT)."""
        self.signals.append(signum)
        if self._kill_at is None:
            self._kill_at = time.monotonic() + GRACE_SECONDS
        self._send(signum)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    async def start(self, command: Sequence[str]) -> None:
        """Start the command; OSError when it cannot be run."""
        self.proc = await asyncio.create_subprocess_exec(*command, process_group=0)
        for signum in self.signals:  # those that came while it was starting
            self._send(signum)

    async def wait(self, timeout: float) -> int | None:
        """The command's exit status as a shell gives it, None while it runs; once the grace
        after a signal has passed, its process group is killed."""
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=timeout)
        except TimeoutError:
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self._send(signal.SIGKILL)
            return None
        return exit_status(code)

    async def end(self) -> None:
        """After an interruption, let the rest of the group (a shell's children) end within
        the grace, then kill what is left: no orphan."""
        if self.proc is None or self._kill_at is None:
            return
        while _group_alive(self.proc.pid):
            if time.monotonic() >= self._kill_at:
                self._send(signal.SIGKILL)
                return
            await asyncio.sleep(0.05)
