"""The command line: flags, config loading and dispatch. Exit 2 on a config error, naming the key.

Each command imports what it needs when it runs: `regions` never loads NVML, aiohttp's
server or gRPC, and `serve` loads the kubelet client only when pod-resources is on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from greenops_exporter import __version__
from greenops_exporter.cli.flags import (
    COLLECTOR_NAMES,
    FLAG_KEYS,
    FLAG_NAMES,
    backend_flags,
    collect_flags,
    config_flags,
    describe,
    server_flags,
)
from greenops_exporter.cli.logs import setup_logging
from greenops_exporter.cli.usage import analyze_flags, replay_flag, unknown_command
from greenops_exporter.config.errors import Interrupted, UsageError
from greenops_exporter.config.models import (
    Config,
    ConfigError,
    dotted_overrides,
    effective_yaml,
    load_config,
)

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
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenops-exporter",
        description="GPU energy and efficiency exporter for Prometheus.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="serve is the default command: `greenops-exporter --listen-address :9479`\n"
        "is `greenops-exporter serve --listen-address :9479`.\n"
        "Each command lists its own flags: greenops-exporter COMMAND --help\n"
        "(serve's flags: greenops-exporter serve --help).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    config, backend, collect = config_flags(), backend_flags(), collect_flags()
    reads = [config, backend, collect]  # commands that read GPUs
    sub.add_parser(
        "serve",
        parents=[*reads, server_flags()],
        help="collect and serve /metrics (the default)",
        description="Collect GPU readings and serve /metrics, /healthz, /readyz and /.",
    )
    sub.add_parser(
        "check",
        parents=reads,
        help="show the backend, devices, capabilities and a read",
        description="The backend chosen and why, each device, its capabilities and a read.",
    )
    rec = sub.add_parser(
        "record", parents=reads, help="write live readings to a recording (fixtures format)"
    )
    rec.add_argument(
        "--duration",
        required=True,
        metavar="DURATION",
        help="how long to record: 2s, 90m, 4h, 1h30m or plain seconds",
    )
    rec.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output file; with several GPUs FILE's stem + -gpuN + its suffix "
        "(trace.jsonl -> trace-gpu0.jsonl, ...), or where {gpu} stands in the name; "
        "a directory: gpuN.jsonl inside it",
    )
    meas = sub.add_parser("measure", parents=reads, help="the energy and carbon of one command")
    meas.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    meas.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="append a row in CodeCarbon's emissions.csv format (header when new)",
    )
    meas.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write a table for a pull-request comment"
    )
    meas.add_argument(
        "--project-name", default="greenops", help="the CSV's project_name (default greenops)"
    )
    meas.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to measure"
    )
    green = sub.add_parser(
        "greenest-window", parents=[config], help="when to start deferrable work"
    )
    green.add_argument(
        "--duration", default="4h", help="length of the job (4h, 90m, 1h30m; default 4h)"
    )
    green.add_argument(
        "--within",
        default="24h",
        help="the window must end within this span from now (at least --duration; default 24h)",
    )
    green.add_argument("--zone", help="carbon zone (default: carbon.zone)")
    gate = sub.add_parser(
        "carbon-gate", parents=[config], help="exit 0 when the grid is green enough, else 3"
    )
    gate.add_argument(
        "--max-intensity",
        type=float,
        required=True,
        metavar="G_PER_KWH",
        help="the highest grid intensity (gCO2e/kWh, 0 or more) at which to go ahead",
    )
    gate.add_argument("--zone", help="carbon zone (default: carbon.zone)")
    reg = sub.add_parser(
        "regions", parents=[config], help="one job's carbon in each candidate region"
    )
    reg.add_argument(
        "--energy-kwh",
        type=float,
        required=True,
        metavar="N",
        help="the job's energy in kWh (0 or more), at the GPUs and hosts before PUE",
    )
    reg.add_argument("--regions", help="comma-separated zones (default: all in the table)")
    reg.add_argument("--pue", type=float, default=None, help="default: carbon.pue")
    analyze = sub.add_parser("analyze", help="energy of windows of a recording, offline")
    analyze.add_argument(
        "recording",
        type=Path,
        help="a recording (JSON lines, as `record` writes); its GPU from probe.json beside it",
    )
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
    analyze.add_argument(
        "--pue",
        type=float,
        help="with --intensity: power usage effectiveness, 1.0-3.0 like carbon.pue (default 1)",
    )
    analyze.add_argument(
        "--as-exported",
        action="store_true",
        help="also run the recording through the live estimator and show, per window, the "
        "energy the exporter would have exported beside the counter's",
    )
    analyze.add_argument(
        "--collect-interval",
        type=float,
        metavar="SECONDS",
        help="with --as-exported: the collection interval (default 1)",
    )
    analyze.add_argument(
        "--energy-anchor-interval",
        type=float,
        metavar="SECONDS",
        help="with --as-exported: seconds between energy-counter reads (default 30)",
    )
    from greenops_exporter.cli.report import add_parser as add_report

    add_report(sub)
    for command in sub.choices.values():  # to say which command refuses a flag
        command.set_defaults(command_parser=command)
    describe(sub.choices)
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
    config = load_config(args.config, overrides=dotted_overrides(flags), flags=FLAG_NAMES)
    return replay_flag(config, args.backend) if flags.get("backend.replay.files") else config


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. Output into a pipe closed early (`regions | head`) ends quietly, as
    Python's docs recommend: stdout goes to devnull so that the exit's flush cannot fail.
    Ctrl-C ends any command with one line and 130, as a shell reports SIGINT, never a
    traceback (`measure` and `record` handle it themselves and keep what they have)."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here rather than at the interpreter's exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1  # what Python itself exits with on EPIPE
    except KeyboardInterrupt:
        print("greenops-exporter: interrupted by SIGINT", file=sys.stderr)
        return 130
    except Interrupted as exc:
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return exc.exit_code


def _main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and not args_list[0].startswith("-") and args_list[0] not in COMMANDS:
        print(f"greenops-exporter: {unknown_command(args_list[0], COMMANDS)}", file=sys.stderr)
        return 2
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    parser = build_parser()
    args, unknown = parser.parse_known_args(args_list)
    if unknown:  # the command's own usage, not the top level's: `regions --listen-address`
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "analyze":
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
            from greenops_exporter.commands.analyze import analyze, load_analysis_config

            analysis = load_analysis_config(args.config)  # GREENOPS_ANALYSIS__* too
            intensity, pue, exported = analyze_flags(args)

            return analyze(
                args.recording,
                args.window,
                args.json,
                analysis,
                intensity,
                pue,
                as_exported=exported,
            )
        if args.command == "report":  # reads Prometheus, not the exporter's config
            from greenops_exporter.cli.report import run as report

            return report(args)
        config = config_from_args(args)
        setup_logging(config.log_level, config.log_format)
        if args.print_config:
            from greenops_exporter.commands.wiring import effective_config

            print(effective_yaml(effective_config(config)), end="")
            return 0
        if args.command == "check":
            from greenops_exporter.commands.check import check

            return check(config)
        if args.command in ("greenest-window", "carbon-gate", "regions", "measure"):
            return _carbon_command(args, config)
        if args.command == "record":
            from greenops_exporter.commands.record import check_out, record
            from greenops_exporter.commands.wiring import backend_from, settings_from

            seconds = _duration_seconds("--duration", args.duration)
            check_out(args.out)  # before the backend starts
            backend, reason = backend_from(config)
            return asyncio.run(record(backend, reason, settings_from(config), seconds, args.out))
        from greenops_exporter.commands.serve import serve

        asyncio.run(serve(config, reload=lambda: config_from_args(args)))
        return 0
    except ConfigError as exc:
        print(f"greenops-exporter: config error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main() ends quietly
    except OSError as exc:  # e.g. the listen address is taken
        print(f"greenops-exporter: {exc}", file=sys.stderr)
        return 1


def _duration_seconds(flag: str, text: str) -> float:
    from greenops_exporter.commands.carbon import parse_duration

    try:
        seconds = parse_duration(text).total_seconds()
    except UsageError as exc:
        raise UsageError(f"{flag} {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{flag} {text!r}: must be positive")
    return seconds


def _window_flags(duration_text: str, within_text: str) -> tuple[timedelta, timedelta]:
    """greenest-window's flags, each positive, the job no longer than the span it must end in."""
    duration = _duration_seconds("--duration", duration_text)
    within = _duration_seconds("--within", within_text)
    if duration > within:
        raise UsageError(
            f"--duration {duration_text!r} is longer than --within {within_text!r}: "
            "the window must end within --within"
        )
    return timedelta(seconds=duration), timedelta(seconds=within)


def _carbon_command(args: argparse.Namespace, config: Config) -> int:
    from greenops_exporter.commands.carbon import (
        carbon_gate,
        check_max_intensity,
        check_pue,
        greenest,
        regions,
    )
    from greenops_exporter.commands.wiring import carbon_from
    from greenops_exporter.sources.carbon_static import UnknownZone

    if args.command in ("greenest-window", "carbon-gate"):
        if args.command == "carbon-gate":
            check_max_intensity(args.max_intensity)
        else:
            window = _window_flags(args.duration, args.within)  # before any source is asked
        try:
            chain = carbon_from(config, args.zone)  # --zone: only the sources serving it
        except UnknownZone as exc:
            raise UsageError(f"--zone: {exc}") from None
        if args.command == "carbon-gate":
            return carbon_gate(chain, args.max_intensity)
        return greenest(chain, *window)
    if args.command == "regions":
        if not 0 <= args.energy_kwh < math.inf:  # NaN fails too
            raise UsageError(
                f"--energy-kwh: {args.energy_kwh:g} is outside the allowed range (0 or more kWh)"
            )
        names = None if args.regions is None else [n.strip() for n in args.regions.split(",")]
        pue = config.carbon.pue if args.pue is None else check_pue(args.pue)
        return regions(args.energy_kwh, names, pue)
    if args.command == "measure":
        return _measure(args, config)
    raise AssertionError(args.command)


def _measure(args: argparse.Namespace, config: Config) -> int:
    from greenops_exporter.commands.measure import CommandNotRun, measure
    from greenops_exporter.commands.measure_report import check_outputs, report, write_outputs
    from greenops_exporter.commands.wiring import backend_from, carbon_from, settings_from

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UsageError("measure: give the command after --")
    check_outputs(args.json, args.csv, args.markdown)  # before the run, not after it
    backend, reason = backend_from(config)
    try:
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
    except CommandNotRun as exc:  # 127 or 126, as a shell exits
        print(f"greenops-exporter: measure: {exc}", file=sys.stderr)
        return exc.exit_code
    data = report(result)
    write_outputs(data, args.json, args.csv, args.markdown, args.project_name)
    return result.exit_status
