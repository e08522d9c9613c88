"""The aiohttp app on a real 127.0.0.1 socket: caching per Snapshot, readiness, liveness."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from greenops_exporter.backends.sim import SimBackend, load_scenario
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.http.server import ExpositionCache, make_app
from greenops_exporter.metrics import Exposition


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def serve(
    test: Callable[[str, Collector, ExpositionCache, Clock], Awaitable[None]],
    exposition: Exposition | None = None,
) -> None:
    clock = Clock()
    collector = Collector(SimBackend(load_scenario(None), clock=clock), monotonic=clock)
    cache = ExpositionCache(exposition or Exposition("h"), lambda: collector.snapshot)
    app = make_app(cache, lambda: collector.snapshot, 1.0, monotonic=clock)

    async def go() -> None:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            await test(str(server.make_url("")), collector, cache, clock)
        finally:
            await server.close()
            await collector.close()

    asyncio.run(go())


def test_ready_only_after_the_first_collection() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        async with ClientSession() as http:
            async with http.get(base + "/readyz") as r:
                assert r.status == 503
            await collector.collect_once()
            async with http.get(base + "/readyz") as r:
                assert r.status == 200

    serve(test)


def test_one_encoding_per_snapshot() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        async with ClientSession() as http:
            clock.now += 1
            await collector.collect_once()
            bodies = []
            for _ in range(3):
                async with http.get(base + "/metrics") as r:
                    bodies.append(await r.read())
            assert bodies[0] == bodies[1] == bodies[2]
            assert cache.encodings == 1
            clock.now += 1
            await collector.collect_once()
            async with http.get(base + "/metrics") as r:
                newer = await r.read()
            assert newer != bodies[0]
            cycles = {
                f.name: f.samples[0].value for f in text_string_to_metric_families(newer.decode())
            }["greenops_collection_cycles"]
            assert cycles == 2

    serve(test)


def test_name_selection() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        clock.now += 1
        await collector.collect_once()
        async with (
            ClientSession() as http,
            http.get(base + "/metrics?name[]=greenops_gpu_power_watts") as r,
        ):
            text = await r.text()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert names == {"greenops_gpu_power_watts"}

    serve(test)


def test_healthz_fails_when_the_loop_goes_silent() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        async with ClientSession() as http:
            await collector.collect_once()
            async with http.get(base + "/healthz") as r:
                assert r.status == 200
            clock.now += 30  # no cycle for 30 s: a wedged loop
            async with http.get(base + "/healthz") as r:
                assert r.status == 503
                assert "silent" in await r.text()
            await collector.collect_once()
            async with http.get(base + "/healthz") as r:
                assert r.status == 200

    serve(test)


def test_only_get_on_known_paths() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        async with ClientSession() as http:
            async with http.post(base + "/metrics") as r:
                assert r.status == 405
            async with http.get(base + "/admin") as r:
                assert r.status == 404

    serve(test)


def test_no_encoding_for_cycles_nobody_scrapes() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        for _ in range(5):
            clock.now += 1
            await collector.collect_once()
        assert cache.encodings == 0
        async with ClientSession() as http, http.get(base + "/metrics") as r:
            text = await r.text()
        assert cache.encodings == 1
        cycles = {f.name: f.samples[0].value for f in text_string_to_metric_families(text)}
        assert cycles["greenops_collection_cycles"] == 5  # the first scrape sees the newest

    serve(test)


class GatedExposition(Exposition):
    """Encodes only while `gate` is open, so a test decides when an encoding finishes."""

    def __init__(self) -> None:
        super().__init__("h")
        self.gate, self.finished = threading.Event(), threading.Event()
        self.gate.set()

    def encode(self, snap: Snapshot, openmetrics: bool = False, names: Any = ()) -> bytes:
        self.finished.clear()
        assert self.gate.wait(10)
        try:
            return super().encode(snap, openmetrics, names)
        finally:
            self.finished.set()


def test_a_scraper_that_keeps_pace_never_waits_for_an_encoding() -> None:
    """Scraped two cycles in a row: the next Snapshot is encoded as its cycle ends; a scrape
    while that runs gets the previous body at once, the ones after it the new body with no
    second encoding. Once scrapes thin out to one every few cycles (Prometheus at 15 s), no
    cycle is encoded that nobody asks for."""
    exposition = GatedExposition()

    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        async def cycle() -> None:
            clock.now += 1
            cache.cycle_ended(await collector.collect_once())

        async with ClientSession() as http:

            async def cycles_seen() -> float:
                async with http.get(base + "/metrics") as r:
                    text = await r.text()
                found = {f.name: f.samples[0].value for f in text_string_to_metric_families(text)}
                return found["greenops_collection_cycles"]

            for n in (1, 2):
                await cycle()
                assert await cycles_seen() == n
            assert cache.encodings == 2
            exposition.gate.clear()
            await cycle()  # two cycles scraped in a row: this one is encoded ahead
            assert cache.encodings == 3
            assert await cycles_seen() == 2  # the encoding is held: the body before, at once
            exposition.gate.set()
            assert await asyncio.to_thread(exposition.finished.wait, 10)
            assert await cycles_seen() == 3 and cache.encodings == 3  # served, not re-encoded
            for n in (4, 5, 6, 7, 8, 9):  # from now on a scrape every third cycle
                await cycle()
                if n % 3 == 0:
                    assert await asyncio.to_thread(exposition.finished.wait, 10)
                    assert await cycles_seen() == n
            # cycle 4 was encoded ahead (3 was scraped, as were 1-2), then only the two
            # scrapes (6, 9) encoded: 5, 7 and 8 nobody scraped and nobody encoded
            assert cache.encodings == 6

    serve(test, exposition)


def test_concurrent_scrapes_share_one_encoding_per_format() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        clock.now += 1
        await collector.collect_once()
        openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with ClientSession() as http:

            async def scrape(headers: dict[str, str]) -> tuple[str, bytes]:
                async with http.get(base + "/metrics", headers=headers) as r:
                    return r.headers["Content-Type"], await r.read()

            results = await asyncio.gather(
                *(scrape({}) for _ in range(4)), *(scrape(openmetrics) for _ in range(4))
            )
        text = {body for kind, body in results if kind.startswith("text/plain")}
        om = {body for kind, body in results if kind.startswith("application/openmetrics")}
        assert len(text) == 1 and len(om) == 1
        assert next(iter(om)).endswith(b"# EOF\n")
        assert cache.encodings == 2  # one per format, for eight scrapes

    serve(test)


def test_requests_are_bounded() -> None:
    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        await collector.collect_once()
        async with ClientSession() as http:
            async with http.get(base + "/metrics", headers={"X-Long": "a" * 10_000}) as r:
                assert r.status in (400, 431)
            many = {f"X-H{i}": "v" for i in range(100)}
            async with http.get(base + "/metrics", headers=many) as r:
                assert r.status in (400, 431)
            async with http.post(base + "/metrics", data=b"x" * 4096) as r:
                assert r.status in (405, 413)

    serve(test)


def test_a_get_with_a_body_over_1_kib_is_refused() -> None:
    """README: request bodies of at most 1 KiB. A GET's body is never read, so aiohttp's
    client_max_size never saw the trial's 120 KB one (200): 413 now, on every path; 1 KiB
    and less are served as before; a chunked body (length unknown) is refused too."""

    async def test(base: str, collector: Collector, cache: ExpositionCache, clock: Clock) -> None:
        await collector.collect_once()
        async with ClientSession() as http:
            for path in ("/metrics", "/healthz", "/"):
                async with http.get(base + path, data=b"x" * 120_000) as r:
                    assert r.status == 413, path
                    assert "request body over 1024 bytes" in await r.text()
            async with http.get(base + "/metrics", data=b"x" * 1024) as r:
                assert r.status == 200

            async def chunks() -> Any:
                yield b"x" * 10

            async with http.get(base + "/readyz", data=chunks()) as r:
                assert r.status == 413

    serve(test)


def test_concurrency_is_bounded() -> None:
    from aiohttp import web

    @web.middleware
    async def slow(request, handler):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        return await handler(request)

    clock = Clock()
    collector = Collector(SimBackend(load_scenario(None), clock=clock), monotonic=clock)
    cache = ExpositionCache(Exposition(None), lambda: collector.snapshot)
    app = make_app(
        cache, lambda: collector.snapshot, 1.0, middlewares=[slow], max_concurrent_requests=2
    )

    async def go() -> list[int]:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with ClientSession() as http:

                async def one() -> int:
                    async with http.get(str(server.make_url("/healthz"))) as r:
                        return r.status

                return sorted(await asyncio.gather(*(one() for _ in range(5))))
        finally:
            await server.close()

    assert asyncio.run(go()) == [200, 200, 503, 503, 503]
