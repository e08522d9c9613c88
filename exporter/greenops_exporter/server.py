"""The HTTP face: /metrics (client_python's aiohttp handler), /healthz, /readyz and a landing page.

Nothing here reads a GPU: handlers look only at the collection loop's last Snapshot.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from . import __version__
from .collect import Snapshot

SnapshotSource = Callable[[], Snapshot]


def make_app(
    registry: CollectorRegistry,
    snapshot: SnapshotSource,
    interval_seconds: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> web.Application:
    """`interval_seconds` sets how long the loop may go quiet before /healthz fails."""
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

    async def readyz(request: web.Request) -> web.Response:
        if snapshot().ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="waiting for the first collection\n")

    async def index(request: web.Request) -> web.Response:
        snap = snapshot()
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                d.info.index,
                html.escape(d.info.name),
                html.escape(d.info.uuid),
                "up" if d.up else html.escape(f"stale: {d.stale_reason}"),
            )
            for d in snap.devices
        )
        body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>greenops-exporter</title></head>
<body><h1>greenops-exporter {html.escape(__version__)}</h1>
<p>Backend: <b>{html.escape(snap.backend)}</b> ({html.escape(snap.backend_reason)})</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul>
<table border="1"><tr><th>GPU</th><th>model</th><th>UUID</th><th>state</th></tr>{rows}</table>
</body></html>
"""
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app
