"""The HTTP face: /metrics, /healthz, /readyz and a landing page.

Nothing here reads a GPU: handlers look only at the collection loop's last Snapshot.
/metrics is encoded when someone asks, once per Snapshot and format, in a worker thread
(never on the event loop); scrapers that arrive meanwhile share that one encoding, and a
cycle nobody scrapes costs no encoding at all. A scraper that keeps pace with collection
(two cycles in a row scraped) gets the next body encoded as soon as its cycle ends; until
that body is ready its scrapes get the one before (a cycle older), so they never wait on
an encoding, whatever their phase against the collection. aiohttp compresses when the
scraper accepts gzip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web

from greenops_exporter import __version__
from greenops_exporter.collect import Snapshot
from greenops_exporter.http.status_page import EnergyToday, render_status
from greenops_exporter.metrics import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition

SnapshotSource = Callable[[], Snapshot]


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


MAX_BODY_BYTES = 1024


@web.middleware
async def bounded_body(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """413 for a request body over 1 KiB, or of unknown length (chunked): no endpoint reads
    one, and aiohttp's `client_max_size` bounds only bodies a handler reads, so a GET with
    120 KB got 200."""
    if request.body_exists and (
        request.content_length is None or request.content_length > MAX_BODY_BYTES
    ):
        return web.Response(
            status=413, text=f"request body over {MAX_BODY_BYTES} bytes (none is read)\n"
        )
    return await handler(request)


class ExpositionCache:
    """Encoded /metrics bodies of the current Snapshot, one per exposition format.

    The first scrape of a new Snapshot starts its encoding in a worker thread; every scrape
    of that Snapshot and format, the first included, awaits that one encoding. A failed
    encoding is not kept: the next scrape tries again. For scrapers that keep pace,
    `cycle_ended` encodes ahead and, until that is done, the previous body is served.
    """

    def __init__(self, exposition: Exposition, snapshot: SnapshotSource) -> None:
        self._exposition = exposition
        self._snapshot = snapshot
        self._encoded_for: Snapshot | None = None
        self._bodies: dict[bool, asyncio.Future[bytes]] = {}
        self._scraped: set[bool] = set()  # formats scraped (unfiltered) of _encoded_for
        self._last_cycle: Snapshot | None = None
        self._streak = {False: 0, True: 0}  # per format: cycles in a row that were scraped
        self._previous: dict[bool, bytes] = {}  # served while the next is encoded ahead
        self.encodings = 0  # how many times a body was encoded (the benchmark reads it)

    def cycle_ended(self, snapshot: Snapshot) -> None:
        """After each collection cycle: encode the new Snapshot at once in the formats
        whose scrapers kept pace (scraped each of the last two Snapshots). Prometheus
        scraping every 15 s never does, so most cycles still cost no encoding; one scraping
        every second finds its body ready instead of waiting ~2-4 ms (8 GPUs x 7 MIG)."""
        kept_pace = self._encoded_for is self._last_cycle is not None
        for fmt in self._streak:
            self._streak[fmt] = self._streak[fmt] + 1 if kept_pace and fmt in self._scraped else 0
        self._last_cycle = snapshot
        ahead = [fmt for fmt, n in self._streak.items() if n >= 2]
        if not ahead:
            return
        loop = asyncio.get_running_loop()
        self._previous = {
            fmt: body.result()
            for fmt, body in self._bodies.items()
            if fmt in ahead and body.done() and not body.cancelled() and not body.exception()
        }
        self._encoded_for, self._bodies, self._scraped = snapshot, {}, set()
        for openmetrics in ahead:
            self.encodings += 1
            body = loop.run_in_executor(None, self._exposition.encode, snapshot, openmetrics)
            body.add_done_callback(_retrieve)  # nobody may await it: no "never retrieved"
            self._bodies[openmetrics] = body

    async def render(self, accept: str, names: list[str]) -> tuple[bytes, str]:
        openmetrics = "application/openmetrics-text" in accept
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        loop = asyncio.get_running_loop()
        current = self._snapshot()
        if names:  # ?name[]=... selects families: rare, never cached
            self.encodings += 1
            body = await loop.run_in_executor(
                None, self._exposition.encode, current, openmetrics, names
            )
            return body, content_type
        if current is not self._encoded_for:
            self._encoded_for, self._bodies, self._scraped = current, {}, set()
            self._previous = {}
        self._scraped.add(openmetrics)
        pending = self._bodies.get(openmetrics)
        if pending is not None and not pending.done() and openmetrics in self._previous:
            return self._previous[openmetrics], content_type  # the next is on its way
        if pending is None:
            self.encodings += 1
            pending = loop.run_in_executor(None, self._exposition.encode, current, openmetrics)
            self._bodies[openmetrics] = pending
        try:
            return await asyncio.shield(pending), content_type
        except Exception:
            if self._bodies.get(openmetrics) is pending:
                del self._bodies[openmetrics]
            raise


def _retrieve(body: asyncio.Future[bytes]) -> None:
    if not body.cancelled():
        body.exception()


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
        body, content_type = await cache.render(accept, request.query.getall("name[]", []))
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
        middlewares=[bounded_body, concurrency_limit(max_concurrent_requests), *middlewares],  # type: ignore[list-item]
    )
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app
