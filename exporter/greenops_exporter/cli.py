"""Commands: serve (default), check, analyze. Exit 2 on a config error, naming the key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from . import __version__
from .analysis.footprint import FootprintSettings
from .analysis.inference import InferenceAccount
from .backends import choose_backend
from .backends.base import Backend, Capability, DeviceInfo
from .backends.replay import RecordingError
from .backends.sim import ScenarioError
from .carbon_commands import carbon_gate, greenest, measure, parse_duration, regions, report
from .collect import Collector, CollectSettings, InferenceBinding, Snapshot
from .config import (
    AnalysisConfig,
    Config,
    ConfigError,
    dotted_overrides,
    effective_yaml,
    load_config,
    parse_listen_address,
    secret,
)
from .gpu_models import model_by_name
from .metrics import COLLECTOR_NAMES, SnapshotCollector
from .offline import UsageError, analyze, record
from .sources.base import PolledSource
from .sources.carbon_intensity import (
    CarbonApi,
    CarbonAwareSdk,
    CarbonChain,
    ElectricityMaps,
    UkCarbonIntensity,
    WattTime,
)
from .sources.cgroups import CgroupReader
from .sources.inference import KINDS, CounterSpec, InferenceSource
from .sources.kubelet import KubeletPodResources, ProcessIdentifier
from .web_config import basic_auth_middleware, load_web_config, ssl_context

log = logging.getLogger("greenops_exporter")

COMMANDS = (
    "serve",
    "check",
    "analyze",
    "record",
    "measure",
    "greenest-window",
    "carbon-gate",
    "regions",
)

# flag dest -> config key path
FLAG_KEYS = {
    "listen_address": "server.listen_address",
    "web_config_file": "server.web_config_file",
    "backend": "backend.kind",
    "scenario": "backend.sim.scenario",
    "seed": "backend.sim.seed",
    "replay": "backend.replay.files",
    "replay_speed": "backend.replay.speed",
    "replay_loop": "backend.replay.loop",
    "collect_interval": "collect.interval_seconds",
    "device_timeout": "collect.device_timeout_seconds",
    "energy_anchor_interval": "collect.energy_anchor_seconds",
    "process_utilization": "collect.process_utilization",
    "hostname_label": "labels.hostname",
    "hostname": "labels.hostname_value",
    "log_level": "log_level",
}


def _config_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration (flags override GREENOPS_* and the file)")
    g.add_argument("--config", type=Path, help="YAML config file")
    g.add_argument("--print-config", action="store_true", help="print the effective config")
    g.add_argument("--listen-address", help="HOST:PORT or :PORT (default :9479)")
    g.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        metavar="FILE",
        help="TLS and basic auth, in the Prometheus exporter-toolkit format",
    )
    g.add_argument("--backend", choices=["auto", "nvml", "sim", "replay"])
    g.add_argument("--scenario", type=Path, help="sim scenario YAML (default: embedded demo)")
    g.add_argument("--seed", type=int, help="sim random seed (default: the scenario's)")
    g.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="recordings to replay")
    g.add_argument("--replay-speed", type=float, help="replay speed factor (default 1)")
    g.add_argument(
        "--replay-loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="loop recordings (default) or hold the last sample",
    )
    g.add_argument("--collect-interval", type=float, metavar="SECONDS")
    g.add_argument("--device-timeout", type=float, metavar="SECONDS")
    g.add_argument("--energy-anchor-interval", type=float, metavar="SECONDS")
    g.add_argument("--process-utilization", choices=["when_shared", "always", "never"])
    g.add_argument(
        "--hostname-label",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a hostname label to every GPU series (default on)",
    )
    g.add_argument("--hostname", help="hostname label value (default $NODE_NAME or hostname)")
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    for name in COLLECTOR_NAMES:
        g.add_argument(
            f"--collector.{name}",
            dest=f"collector_{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"render the {name} metrics (default on)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenops-exporter",
        description="GPU energy and efficiency exporter for Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="collect and serve /metrics (the default)")
    _config_flags(serve)
    check = sub.add_parser("check", help="show the backend, devices, capabilities, one read")
    _config_flags(check)
    rec = sub.add_parser("record", help="write live readings to a recording (fixtures format)")
    rec.add_argument("--duration", type=float, required=True, metavar="SECONDS")
    rec.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output file; with several GPUs a name with {gpu} (trace_{gpu}.jsonl)",
    )
    _config_flags(rec)
    meas = sub.add_parser("measure", help="the energy and carbon of one command")
    meas.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    _config_flags(meas)
    meas.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    green = sub.add_parser("greenest-window", help="when to start deferrable work")
    green.add_argument("--duration", default="4h", help="length of the job (4h, 90m, …)")
    green.add_argument("--within", default="24h", help="how far ahead it may start")
    green.add_argument("--zone", help="carbon zone (default: carbon.zone)")
    _config_flags(green)
    gate = sub.add_parser("carbon-gate", help="exit 0 when the grid is green enough, else 3")
    gate.add_argument("--max-intensity", type=float, required=True, metavar="G_PER_KWH")
    gate.add_argument("--zone", help="carbon zone (default: carbon.zone)")
    _config_flags(gate)
    reg = sub.add_parser("regions", help="one job's carbon in each candidate region")
    reg.add_argument("--energy-kwh", type=float, required=True)
    reg.add_argument("--regions", help="comma-separated zones (default: all in the table)")
    reg.add_argument("--pue", type=float, default=None, help="default: carbon.pue")
    _config_flags(reg)
    analyze = sub.add_parser("analyze", help="energy of windows of a recording, offline")
    analyze.add_argument("recording", type=Path)
    analyze.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="START:END[:OPS]",
        help="a window in the recording's t seconds, with the operations done in it "
        "(START:END[:OPS], repeatable; default: all of it)",
    )
    analyze.add_argument("--json", action="store_true", help="print JSON")
    analyze.add_argument("--config", type=Path, help="YAML config (its analysis section)")
    analyze.add_argument("--intensity", type=float, metavar="G_PER_KWH", help="grid intensity")
    analyze.add_argument("--pue", type=float, default=1.0, help="power usage effectiveness")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    flags: dict[str, Any] = {key: getattr(args, dest, None) for dest, key in FLAG_KEYS.items()}
    for name in COLLECTOR_NAMES:
        flags[f"collectors.{name}"] = getattr(args, f"collector_{name}", None)
    if flags.get("backend.replay.files"):
        flags["backend.replay.files"] = [str(p) for p in flags["backend.replay.files"]]
    for key in ("backend.sim.scenario", "server.web_config_file"):
        if flags.get(key) is not None:
            flags[key] = str(flags[key])
    return load_config(args.config, overrides=dotted_overrides(flags))


def hostname_label(config: Config) -> str | None:
    if not config.labels.hostname:
        return None
    return config.labels.hostname_value or os.environ.get("NODE_NAME") or socket.gethostname()


def settings_from(config: Config) -> CollectSettings:
    c = config.collect
    return CollectSettings(
        interval_seconds=c.interval_seconds,
        device_timeout_seconds=c.timeout,
        energy_anchor_seconds=c.energy_anchor_seconds,
        process_utilization=c.process_utilization,
        backend_retry_seconds=c.backend_retry_seconds,
        gpm=config.collectors.gpm,
        processes=config.collectors.processes,
        mig=config.collectors.mig,
        thresholds=config.analysis.bottleneck,
        waste=config.analysis.waste(),
        identity_expire_seconds=config.analysis.identity_expire_seconds,
        advice_window_seconds=config.analysis.advice_window_seconds,
        footprint_for=footprint_resolver(config),
        greenest_window_seconds=config.carbon.greenest_window_seconds,
        greenest_within_seconds=config.carbon.greenest_within_seconds,
    )


def backend_from(config: Config) -> tuple[Backend, str]:
    b = config.backend
    try:
        return choose_backend(
            b.kind,
            scenario=b.sim.scenario,
            seed=b.sim.seed,
            replay_files=b.replay.files,
            replay_speed=b.replay.speed,
            replay_loop=b.replay.loop,
        )
    except ScenarioError as exc:
        raise ConfigError(f"backend.sim.scenario: {exc}") from exc


# --- serve ------------------------------------------------------------------------------


def kubernetes_from(config: Config) -> tuple[ProcessIdentifier | None, list[PolledSource[Any]]]:
    """The pod-resources source (when wanted) and the process identifier built on it."""
    k = config.kubernetes
    if k.proc_root != Path("/proc"):  # the node's /proc in a container: process names too
        import psutil

        psutil.PROCFS_PATH = str(k.proc_root)
    kubelet = None
    if k.pod_resources == "on" or (k.pod_resources == "auto" and k.pod_resources_socket.exists()):
        kubelet = KubeletPodResources(k.pod_resources_socket, k.poll_seconds, k.timeout_seconds)
    cgroups = CgroupReader(k.proc_root) if k.cgroups else None
    if kubelet is None and cgroups is None:
        return None, []
    return ProcessIdentifier(kubelet, cgroups), [kubelet] if kubelet else []


def carbon_from(config: Config) -> CarbonChain:
    """The live carbon APIs in the configured order, then the static table."""
    c = config.carbon
    sources: list[CarbonApi] = []
    for i, s in enumerate(c.sources):
        where = f"carbon.sources.{i}"
        kw = {"interval_seconds": s.interval_seconds, "timeout_seconds": s.timeout_seconds}
        if s.kind == "electricitymaps":
            token = secret(f"{where}.token", s.token, s.token_file, s.token_env)
            if token is None:
                raise ConfigError(
                    f"{where}.token: electricitymaps needs a token (or token_file, token_env)"
                )
            sources.append(ElectricityMaps(s.url, s.zone or "", token, **kw))
        elif s.kind == "watttime":
            password = secret(f"{where}.password", s.password, s.password_file, s.password_env)
            if password is None:
                raise ConfigError(
                    f"{where}.password: watttime needs a password (or password_file, password_env)"
                )
            sources.append(WattTime(s.url, s.zone or "", s.username or "", password, **kw))
        elif s.kind == "uk":
            sources.append(UkCarbonIntensity(s.url, s.region_id, **kw))
        else:
            sources.append(CarbonAwareSdk(s.url, s.zone or "", **kw))
    return CarbonChain(sources, c.zone, c.intensity_grams_per_kwh, c.max_age_seconds)


def footprint_resolver(config: Config) -> Callable[[DeviceInfo], FootprintSettings]:
    """Per-GPU carbon and cost settings, looked up by model key, then NVML name, then default."""

    def resolve(info: DeviceInfo) -> FootprintSettings:
        model = model_by_name(info.name)
        keys = [k for k in (model.key if model else None, info.name, "default") if k]
        embodied = next(
            (config.carbon.embodied[k] for k in keys if k in config.carbon.embodied), None
        )
        price = next(
            (config.cost.gpu_hourly_price[k] for k in keys if k in config.cost.gpu_hourly_price),
            0.0,
        )
        return FootprintSettings(
            pue=config.carbon.pue,
            embodied_kg=embodied.kg if embodied else 0.0,
            lifetime_years=embodied.lifetime_years if embodied else 4.0,
            energy_price_per_kwh=config.cost.energy_price_per_kwh,
            rental_price_per_hour=price,
            currency=config.cost.currency,
        )

    return resolve


def inference_from(config: Config) -> list[InferenceBinding]:
    bindings = []
    for c in config.inference.sources:
        spec = KINDS.get(c.kind) or CounterSpec(
            requests=c.requests_metric or "",
            prompt_tokens=c.prompt_tokens_metric,
            generation_tokens=c.generation_tokens_metric,
            model_label=c.model_label,
            matchers=c.matchers,
        )
        source = InferenceSource(c.name, c.kind, c.url, spec, c.interval_seconds, c.timeout_seconds)
        gpus = None if c.gpus == "auto" else frozenset(str(g) for g in c.gpus)
        source.find_pids = gpus is None
        bindings.append(
            InferenceBinding(source, gpus, InferenceAccount(config.inference.window_seconds))
        )
    return bindings


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
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        SnapshotCollector(
            lambda: collector.snapshot, hostname_label(config), config.collectors.enabled()
        )
    )
    ProcessCollector(namespace="greenops_exporter", registry=registry)

    from aiohttp import web

    from .server import ExpositionCache, make_app
    from .status_page import EnergyToday

    cache = ExpositionCache(registry, lambda: collector.snapshot)
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
        await cache.prepare(snapshot)

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


# --- check ------------------------------------------------------------------------------


async def _two_cycles(collector: Collector) -> Snapshot:
    """Two reads a moment apart: GPM values exist only as a difference of two samples."""
    await collector.collect_once()
    await asyncio.sleep(0.3)
    snap = await collector.collect_once()
    await collector.close()
    return snap


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}{unit}"


def check(config: Config) -> int:
    backend, reason = backend_from(config)
    # read every expensive value on both cycles: check is about what the GPU can report
    settings = replace(settings_from(config), energy_anchor_seconds=0.0)
    snap = asyncio.run(_two_cycles(Collector(backend, settings, reason)))
    print(f"backend: {snap.backend} ({reason})")
    if not snap.backend_up:
        print("backend unavailable: no device can be read")
        return 1
    if not snap.devices:
        print("no device found")
        return 1
    for d in snap.devices:
        info = d.info
        print(f"\nGPU {info.index}: {info.name}  {info.uuid}  bus {info.pci_bus_id}")
        print(
            f"  architecture {info.architecture}, driver {info.driver_version}, "
            f"memory {info.memory_total_bytes / 2**30:.1f} GiB, "
            f"power limit {_fmt(info.power_limit_watts, unit=' W')}, "
            f"MIG {'on' if info.mig_enabled else 'off'}"
        )
        supported = [c.value for c in Capability if info.supports(c)]
        missing = [c.value for c in Capability if not info.supports(c)]
        print(f"  supported:   {', '.join(supported)}")
        print(f"  unsupported: {', '.join(missing) or '-'}")
        r = d.reading
        if r is None or not d.up:
            print(f"  read failed: {d.stale_reason}")
            continue
        g = r.gpm
        rows = [
            ("power (average)", _fmt(r.power_watts, unit=" W")),
            ("power (instant)", _fmt(r.power_instant_watts, unit=" W")),
            ("energy counter", _fmt(r.energy_counter_joules, unit=" J")),
            (
                "utilization gpu/mem",
                f"{_fmt(r.utilization_gpu, 100, 0)} % / {_fmt(r.utilization_memory, 100, 0)} %",
            ),
            (
                "memory used",
                f"{_fmt(r.memory_used_bytes, 2**-30, 2)} GiB of "
                f"{_fmt(r.memory_total_bytes, 2**-30, 2)} GiB",
            ),
            ("temperature", _fmt(r.temperature_celsius, unit=" C", digits=0)),
            (
                "clocks sm/mem",
                f"{_fmt(r.sm_clock_hertz, 1e-6, 0)} / {_fmt(r.memory_clock_hertz, 1e-6, 0)} MHz",
            ),
            ("P-state", f"P{r.pstate}" if r.pstate is not None else "-"),
            (
                "clock event reasons",
                hex(r.clock_event_reasons) if r.clock_event_reasons is not None else "-",
            ),
            ("PCIe tx/rx bytes", f"{r.pcie_tx_bytes} / {r.pcie_rx_bytes}"),
            (
                "SM active / occupancy",
                "-" if g is None else f"{_fmt(g.sm_active, 100)} % / {_fmt(g.sm_occupancy, 100)} %",
            ),
            (
                "tensor / DRAM active",
                "-"
                if g is None
                else f"{_fmt(g.tensor_active, 100)} % / {_fmt(g.dram_active, 100)} %",
            ),
            (
                "processes",
                ", ".join(
                    f"{p.pid} {p.command} {_fmt(p.used_memory_bytes, 2**-30, 2)} GiB"
                    for p in r.processes
                )
                or "-",
            ),
            (
                "MIG devices",
                ", ".join(f"GI {m.gpu_instance_id} {m.profile}" for m in r.mig_devices) or "-",
            ),
            ("read time", _fmt(d.read_seconds, 1000, 2, " ms")),
            (
                "bottleneck",
                f"{d.waste.bottleneck} ({d.waste.signals} signals)" if d.waste.bottleneck else "-",
            ),
            (
                "MIG right-size",
                f"{d.waste.right_size.profile} (frees {d.waste.right_size.freed_ratio:.0%})"
                if d.waste.right_size
                else "-",
            ),
            ("recommendation", d.waste.advice.text if d.waste.advice else "-"),
        ]
        for label, value in rows:
            print(f"  {label:<22} {value}")
    return 0


# --- analyze ----------------------------------------------------------------------------


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "analyze":
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
            analysis = load_config(args.config).analysis if args.config else AnalysisConfig()
            if (args.intensity is not None and args.intensity < 0) or args.pue < 1:
                raise UsageError("--intensity must be >= 0 and --pue >= 1")
            return analyze(
                args.recording, args.window, args.json, analysis, args.intensity, args.pue
            )
        config = config_from_args(args)
        logging.basicConfig(
            level=config.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if args.print_config:
            print(effective_yaml(config), end="")
            return 0
        if args.command == "check":
            return check(config)
        if args.command in ("greenest-window", "carbon-gate"):
            if args.zone:
                config.carbon.zone = args.zone
                for source in config.carbon.sources:
                    if source.kind != "uk":
                        source.zone = args.zone
            chain = carbon_from(config)
            if args.command == "carbon-gate":
                return carbon_gate(chain, args.max_intensity)
            return greenest(chain, parse_duration(args.duration), parse_duration(args.within))
        if args.command == "regions":
            if args.energy_kwh < 0:
                raise UsageError("--energy-kwh must not be negative")
            names = [n.strip() for n in args.regions.split(",")] if args.regions else None
            return regions(args.energy_kwh, names, args.pue or config.carbon.pue)
        if args.command == "measure":
            command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not command:
                raise UsageError("measure: give the command after --")
            backend, reason = backend_from(config)
            result = asyncio.run(
                measure(
                    command,
                    backend,
                    reason,
                    settings_from(config),
                    carbon_from(config),
                    config.carbon.pue,
                )
            )
            report(result, args.json)
            return result.exit_code
        if args.command == "record":
            if args.duration <= 0:
                raise UsageError("--duration must be positive")
            backend, reason = backend_from(config)
            return asyncio.run(
                record(backend, reason, settings_from(config), args.duration, args.out)
            )
        asyncio.run(serve(config, reload=lambda: config_from_args(args)))
        return 0
    except ConfigError as exc:
        print(f"greenops-exporter: config error: {exc}", file=sys.stderr)
        return 2
    except (UsageError, RecordingError) as exc:
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the listen address is taken
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 1
