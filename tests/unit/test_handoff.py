"""A batch of worker-thread reads wakes the event loop once, when the last one lands."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from greenops_exporter.collect.handoff import all_done


def test_the_loop_wakes_once_after_the_last_read() -> None:
    async def go() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        wakes = [0]
        original = loop.call_soon_threadsafe

        def counting(*args: object) -> asyncio.Handle:
            wakes[0] += 1
            return original(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        release = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            fast = [pool.submit(lambda: 1) for _ in range(7)]
            slow = pool.submit(release.wait)
            waiter = all_done([*fast, slow], loop)
            await asyncio.sleep(0.05)
            early = waiter.done()  # seven of eight done: still waiting
            release.set()
            await asyncio.wait_for(waiter, 5)
        return wakes[0], early, waiter.done()

    wakes, early, late = asyncio.run(go())
    assert (wakes, early, late) == (1, False, True)


def test_a_read_that_never_ends_leaves_the_waiter_to_its_deadline() -> None:
    async def go() -> bool:
        loop = asyncio.get_running_loop()
        never = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(2)
        futures = [pool.submit(lambda: 1), pool.submit(never.wait)]
        try:
            await asyncio.wait_for(all_done(futures, loop), 0.1)
        except TimeoutError:
            return futures[0].done() and not futures[1].done()
        finally:
            never.set()
            pool.shutdown()
        return False

    assert asyncio.run(go())


def test_no_reads_is_done_at_once() -> None:
    async def go() -> bool:
        return all_done([], asyncio.get_running_loop()).done()

    assert asyncio.run(go())
