"""`serve`: the collection loop and the HTTP server, with SIGHUP reload and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from .. import __version__
from ..collect import Collector, Snapshot
from ..config import Config, ConfigError, parse_listen_address
from ..web_config import basic_auth_middleware, load_web_config, ssl_context
from .wiring import (
    backend_from,
    carbon_from,
    hostname_label,
    inference_from,
    kubernetes_from,
    settings_from,
)

log = logging.getLogger("greenops_exporter")


async def serve(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM or SIGINT. On SIGHUP the config is read again: a valid one
    replaces the running exporter in place (counters start again, as after a restart), an
    invalid one is refused with one log line and the running config kept."""
    loop = asyncio.get_running_loop()
    while True:
        stop = asyncio.Event()
        replacement: list[Config] = []

        def hangup(stop: asyncio.Event = stop, replacement: list[Config] = replacement) -> None:
            if reload is None:
                return
            try:
                new = reload()
                backend_from(new)  # a bad scenario is refused here, not after the switch
                if new.server.web_config_file:
                    load_web_config(new.server.web_config_file)
            except ConfigError as exc:
                log.error("config reload refused, keeping the running config: %s", exc)
                return
            replacement.append(new)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        await serve_once(config, stop)
        if not replacement:
            return
        config = replacement[0]
        log.info("config reloaded")


async def serve_once(config: Config, stop: asyncio.Event) -> None:
    backend, reason = backend_from(config)
    log.info("backend %s: %s", backend.name, reason)
    identify, sources = kubernetes_from(config)
    inference = inference_from(config)
    carbon = carbon_from(config)
    collector = Collector(
        backend,
        settings_from(config),
        reason,
        identify=identify,
        sources=sources,
        inference=inference,
        carbon=carbon,
    )
    from aiohttp import web
    from prometheus_client import CollectorRegistry, ProcessCollector

    from ..metrics import Exposition
    from ..server import ExpositionCache, make_app
    from ..status_page import EnergyToday

    process_metrics = CollectorRegistry(auto_describe=False)
    ProcessCollector(namespace="greenops_exporter", registry=process_metrics)
    exposition = Exposition(
        hostname_label(config), config.collectors.enabled(), extra=process_metrics
    )
    cache = ExpositionCache(exposition, lambda: collector.snapshot)
    today = EnergyToday(time.time)
    web_config = (
        load_web_config(config.server.web_config_file) if config.server.web_config_file else None
    )
    middlewares = (
        [basic_auth_middleware(web_config.basic_auth_users)]
        if web_config and web_config.basic_auth_users
        else []
    )
    tls = (
        ssl_context(web_config.tls_server_config)
        if web_config and web_config.tls_server_config
        else None
    )
    app = make_app(
        cache,
        lambda: collector.snapshot,
        config.collect.interval_seconds,
        today=today,
        middlewares=middlewares,
        max_concurrent_requests=config.server.max_concurrent_requests,
    )

    async def after_cycle(snapshot: Snapshot) -> None:
        today.observe(snapshot)
        cache.cycle_ended(snapshot)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_listen_address(config.server.listen_address)
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=tls)
    await site.start()
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    scheme = "https" if tls else "http"
    print(f"greenops-exporter {__version__} serving {scheme}://{shown}:{port}/metrics", flush=True)
    log.info("listening on %s:%d", host, port)

    task = asyncio.create_task(collector.run(stop, after_cycle=after_cycle))
    source_tasks = [asyncio.create_task(source.run(stop)) for source in collector.sources]
    await stop.wait()
    log.info("shutting down")
    await task
    for source_task in source_tasks:
        source_task.cancel()
    await asyncio.gather(*source_tasks, return_exceptions=True)
    for binding in inference:
        await binding.source.close()
    for api in carbon.sources:
        await api.close()
    await runner.cleanup()
    await collector.close()
