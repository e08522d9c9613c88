"""`serve`: the collection loop and the HTTP server, with SIGHUP reload and clean shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from greenops_exporter import __version__
from greenops_exporter.collect import Collector, Snapshot
from greenops_exporter.commands.wiring import (
    backend_from,
    carbon_from,
    hostname_label,
    inference_from,
    kubernetes_from,
    settings_from,
)
from greenops_exporter.config.models import Config, ConfigError, parse_listen_address
from greenops_exporter.http.web_config import basic_auth_middleware, load_web_config, ssl_context

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("greenops_exporter")


class ReloadFailures:
    """Counts refused reloads for /metrics; it lives as long as the process, across reloads."""

    def __init__(self) -> None:
        self.count = 0

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "greenops_config_reload_failures",
            "SIGHUP reloads refused (an invalid config, or a new listen address that could "
            "not be bound); the running config and listener were kept.",
            value=self.count,
        )


class Listener:
    """The listening sockets of one listen address, bound by us so that a reload can bind
    the new address before the old one is closed, and keep the old one when that fails.
    Each generation of the server gets duplicates of the sockets: closing them leaves these
    listening, so a reload that keeps the address refuses no connection."""

    def __init__(self, address: str, sockets: list[socket.socket]) -> None:
        self.address = address
        self.sockets = sockets

    @classmethod
    def bind(cls, address: str) -> Listener:
        """OSError, naming the address, when it cannot be bound (in use, not ours)."""
        host, port = parse_listen_address(address)
        sockets: list[socket.socket] = []
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(128)
                sock.setblocking(False)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror or exc}") from exc
        return cls(address, sockets)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def serve(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM or SIGINT. On SIGHUP the config is read again: a valid one
    replaces the running exporter in place (counters start again, as after a restart), an
    invalid one, or one whose new listen address cannot be bound, is refused with one log
    line, counted, and the running config and listener kept."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    loop = asyncio.get_running_loop()
    failures = ReloadFailures()
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(namespace="greenops_exporter", registry=registry)
    registry.register(failures)
    listener = Listener.bind(config.server.listen_address)
    try:
        while True:
            stop = asyncio.Event()
            replacement: list[tuple[Config, Listener]] = []

            def hangup(
                stop: asyncio.Event = stop,
                replacement: list[tuple[Config, Listener]] = replacement,
                listener: Listener = listener,
            ) -> None:
                if reload is None or replacement:  # none configured, or one under way
                    return
                try:
                    new = reload()
                    backend_from(new)  # a bad scenario is refused here, not after the switch
                    if new.server.web_config_file:
                        load_web_config(new.server.web_config_file)  # certificates too
                    address = new.server.listen_address
                    bound = listener if address == listener.address else Listener.bind(address)
                except (ConfigError, OSError) as exc:
                    failures.count += 1
                    log.error("config reload refused, keeping the running config: %s", exc)
                    return
                replacement.append((new, bound))
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, hangup)
            await serve_once(
                config, stop, listener, registry, reloading=functools.partial(bool, replacement)
            )
            if not replacement:
                return
            config, bound = replacement[0]
            if bound is not listener:
                listener.close()
                listener = bound
            log.info("config reloaded")
    finally:
        listener.close()


async def serve_once(
    config: Config,
    stop: asyncio.Event,
    listener: Listener,
    registry: CollectorRegistry,
    reloading: Callable[[], bool] = lambda: False,
) -> None:
    """One generation: a collector and an HTTP server on duplicates of `listener`'s sockets.
    `reloading` says, once `stop` is set, whether a SIGHUP's new config follows."""
    # the web config first: its error must not follow log lines about a backend never used
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

    from greenops_exporter.http.server import ExpositionCache, make_app
    from greenops_exporter.http.status_page import EnergyToday
    from greenops_exporter.metrics import Exposition

    exposition = Exposition(hostname_label(config), config.collectors.enabled(), extra=registry)
    cache = ExpositionCache(exposition, lambda: collector.snapshot)
    today = EnergyToday(time.time)
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
    for sock in listener.sockets:
        await web.SockSite(runner, sock.dup(), ssl_context=tls).start()
    host, _ = parse_listen_address(config.server.listen_address)
    port = listener.sockets[0].getsockname()[1]
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    scheme = "https" if tls else "http"
    print(f"greenops-exporter {__version__} serving {scheme}://{shown}:{port}/metrics", flush=True)
    log.info("listening on %s:%d", host, port)

    task = asyncio.create_task(collector.run(stop, after_cycle=after_cycle))
    source_tasks = [asyncio.create_task(source.run(stop)) for source in collector.sources]
    await stop.wait()
    log.info("reloading: stopping this generation" if reloading() else "shutting down")
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
