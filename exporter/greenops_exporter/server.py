"""The HTTP face: /metrics, /healthz, /readyz and a landing page.

Nothing here reads a GPU: handlers look only at the collection loop's last Snapshot.
/metrics is encoded by client_python (content negotiation: Prometheus text or OpenMetrics;
aiohttp compresses when the scraper accepts gzip), and the encoded bytes are kept until the
next Snapshot. The Snapshot changes once per collection cycle, so encoding it again for
every scraper would only repeat work (6 ms for 630 series on a small CPU); the text format
is encoded right after each cycle, in a worker thread, so that a scrape is a copy of bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from . import __version__
from .collect import Snapshot
from .status_page import EnergyToday, render_status

SnapshotSource = Callable[[], Snapshot]


class _Selection(Collector):
    """The registry's families whose name (or one of whose sample names) was asked for.

    client_python's restricted_registry relies on describe(), which a Snapshot-driven
    collector cannot answer ahead of the data, so the selection is made on collect.
    """

    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name in self._names or any(s.name in self._names for s in family.samples):
                yield family


Middleware = Callable[
    [web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    Awaitable[web.StreamResponse],
]


def concurrency_limit(limit: int) -> Middleware:
    """503 rather than an unbounded queue when too many requests are in flight at once."""
    in_flight = [0]

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if in_flight[0] >= limit:
            return web.Response(status=503, text="too many concurrent requests\n")
        in_flight[0] += 1
        try:
            return await handler(request)
        finally:
            in_flight[0] -= 1

    return middleware


class ExpositionCache:
    """Encoded /metrics bodies for the current Snapshot, one per exposition format.

    The text format is encoded in a worker thread right after each cycle (`prepare`). A
    scrape that lands while that runs gets the previous cycle's bytes (at most one interval
    old) rather than encoding on the event loop; a scrape of a Snapshot that nobody
    prepared encodes it once and keeps the bytes.
    """

    def __init__(self, registry: CollectorRegistry, snapshot: SnapshotSource) -> None:
        self._registry = registry
        self._snapshot = snapshot
        self._encoded: tuple[Snapshot | None, dict[str, bytes]] = (None, {})
        self._preparing = False

    async def prepare(self, snapshot: Snapshot) -> None:
        """Encode the text format for a new Snapshot before anyone asks for it."""
        encoder, content_type = choose_encoder("")
        self._preparing = True
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, encoder, self._registry)
        finally:
            self._preparing = False
        self._encoded = (snapshot, {content_type: body})

    def render(self, accept: str, names: list[str]) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        if names:  # ?name[]=... selects families: rare, never cached
            return encoder(_Selection(self._registry, set(names))), content_type
        current = self._snapshot()
        encoded_for, bodies = self._encoded
        body = bodies.get(content_type)
        if body is not None and (encoded_for is current or self._preparing):
            return body, content_type
        body = encoder(self._registry)
        if encoded_for is current:
            bodies[content_type] = body
        else:
            self._encoded = (current, {content_type: body})
        return body, content_type


def make_app(
    cache: ExpositionCache,
    snapshot: SnapshotSource,
    interval_seconds: float,
    monotonic: Callable[[], float] = time.monotonic,
    today: EnergyToday | None = None,
    middlewares: Sequence[Middleware] = (),
    max_concurrent_requests: int = 256,
) -> web.Application:
    """`interval_seconds` sets how long the loop may go quiet before /healthz fails; `today`
    (fed by the collection loop) gives the status page its energy-today column."""
    today = today or EnergyToday(time.time)
    started = monotonic()
    seen = {"cycles": -1, "at": started}

    async def healthz(request: web.Request) -> web.Response:
        """Alive while the collection loop keeps completing cycles (a wedged loop restarts)."""
        snap = snapshot()
        now = monotonic()
        if snap.cycles_total != seen["cycles"]:
            seen["cycles"], seen["at"] = snap.cycles_total, now
        quiet = now - seen["at"]
        allowed = max(10.0, 5 * interval_seconds)
        if quiet > allowed:
            return web.Response(status=503, text=f"collection loop silent for {quiet:.0f} s\n")
        return web.Response(text="ok\n")

    async def metrics(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        body, content_type = cache.render(accept, request.query.getall("name[]", []))
        response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
        response.enable_compression()
        return response

    async def readyz(request: web.Request) -> web.Response:
        if snapshot().ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="waiting for the first collection\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=render_status(snapshot(), today.joules, __version__), content_type="text/html"
        )

    app = web.Application(
        # bounded requests: no body worth reading, short header lines, few of them
        client_max_size=1024,
        handler_args={"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64},
        middlewares=[concurrency_limit(max_concurrent_requests), *middlewares],  # type: ignore[list-item]
    )
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app
