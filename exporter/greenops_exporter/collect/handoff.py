"""One wake-up of the event loop for a batch of worker-thread reads.

`asyncio.wrap_future` on each device's read wakes the loop once per device per cycle (a
self-pipe write, an epoll return, a callback run): at 8 GPUs that was the largest part of
the serving process's own CPU (issue 18, py-spy). Counting completions in the workers
and waking the loop once, when the last one lands, keeps each device in its own thread
(a hanging GPU still stalls only itself) at one hand-off per cycle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Collection
from typing import Any


def all_done(
    futures: Collection[concurrent.futures.Future[Any]], loop: asyncio.AbstractEventLoop
) -> asyncio.Future[None]:
    """A loop future that completes once every one of `futures` has."""
    waiter: asyncio.Future[None] = loop.create_future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def one_done(_future: concurrent.futures.Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(wake)

    if not futures:
        waiter.set_result(None)
    for future in futures:
        future.add_done_callback(one_done)
    return waiter
