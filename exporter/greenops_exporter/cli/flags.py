"""The flags several commands share: one parent parser per concern (configuration, backend,
collection, server), so that each command takes only the flags that mean something to it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenops_exporter.config.models import CollectorsConfig

COLLECTOR_NAMES = tuple(CollectorsConfig.model_fields)
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
    "dcgm_url": "backend.dcgm.url",
    "collect_interval": "collect.interval_seconds",
    "device_timeout": "collect.device_timeout_seconds",
    "energy_anchor_interval": "collect.energy_anchor_seconds",
    "process_utilization": "collect.process_utilization",
    "hostname_label": "labels.hostname",
    "hostname": "labels.hostname_value",
    "powercap_root": "host.powercap_root",
    "log_level": "log_level",
    "log_format": "log_format",
}

# config key path -> the flag that sets it, for errors that say where a value came from
FLAG_NAMES = {
    key: "--web.config.file" if dest == "web_config_file" else "--" + dest.replace("_", "-")
    for dest, key in FLAG_KEYS.items()
} | {f"collectors.{name}": f"--collector.{name}" for name in COLLECTOR_NAMES}


def parent_parser(title: str) -> tuple[argparse.ArgumentParser, Any]:
    parent = argparse.ArgumentParser(add_help=False)
    return parent, parent.add_argument_group(title)


def config_flags() -> argparse.ArgumentParser:
    """Every command that reads the config: serve, check, record, measure, carbon commands."""
    parent, g = parent_parser(
        "configuration (flags override GREENOPS_* variables, which override the file)"
    )
    g.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML config file (default: $GREENOPS_CONFIG)"
    )
    g.add_argument(
        "--print-config", action="store_true", help="print the effective config and exit"
    )
    g.add_argument(
        "--log-level",
        type=str.lower,  # WARNING too
        choices=["debug", "info", "warning", "error"],
        help="in any case (default info)",
    )
    g.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text, or json: one object a line with time, level, logger, msg (default text)",
    )
    return parent


def backend_flags() -> argparse.ArgumentParser:
    """Commands that read GPUs: serve, check, record, measure."""
    parent, g = parent_parser("backend (where readings come from)")
    g.add_argument(
        "--backend",
        choices=["auto", "nvml", "sim", "replay", "dcgm"],
        help="auto: nvml when a GPU answers, else sim; never dcgm (default auto)",
    )
    g.add_argument("--scenario", type=Path, help="sim scenario YAML (default: embedded demo)")
    g.add_argument("--seed", type=int, help="sim random seed (default: the scenario's)")
    g.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="recordings to replay")
    g.add_argument("--replay-speed", type=float, help="replay speed factor (default 1)")
    g.add_argument(
        "--replay-loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="loop recordings (default), or play once: a GPU goes stale after its recording ends",
    )
    g.add_argument(
        "--dcgm-url",
        metavar="URL",
        help="dcgm-exporter's page for --backend dcgm (default http://127.0.0.1:9400/metrics)",
    )
    return parent


def collect_flags() -> argparse.ArgumentParser:
    """Commands that collect: serve, check, record, measure."""
    parent, g = parent_parser("collection")
    g.add_argument(
        "--collect-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between two reads of every GPU (default 1)",
    )
    g.add_argument(
        "--device-timeout",
        type=float,
        metavar="SECONDS",
        help="deadline of one GPU's read; a late GPU is marked stale "
        "(default 0.8 x the interval; must be shorter than the interval)",
    )
    g.add_argument(
        "--energy-anchor-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between reads of the energy counter, which anchors the energy "
        "integrated from power (default 30; 0: every read)",
    )
    g.add_argument(
        "--process-utilization",
        choices=["when_shared", "always", "never"],
        help="per-process utilisation reads (default when_shared)",
    )
    g.add_argument(
        "--powercap-root", metavar="DIR", help="RAPL zones (default /sys/class/powercap)"
    )
    for name in COLLECTOR_NAMES:
        g.add_argument(
            f"--collector.{name}",
            dest=f"collector_{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"collect and render the {name} metrics (default on)",
        )
    return parent


def server_flags() -> argparse.ArgumentParser:
    """serve only: the HTTP server and the labels of its series."""
    parent, g = parent_parser("server")
    g.add_argument("--listen-address", help="HOST:PORT or :PORT (default :9479)")
    g.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        metavar="FILE",
        help="TLS and basic auth, in the Prometheus exporter-toolkit format",
    )
    g.add_argument(
        "--hostname-label",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a hostname label to every GPU series (default on)",
    )
    g.add_argument("--hostname", help="hostname label value (default $NODE_NAME or hostname)")
    return parent


# the description line under each command's usage in its --help
ABOUT = {
    "record": "Write live readings, one JSON line a sample and one file a GPU, and a "
    "probe.json naming their GPUs, for analyze and replay.",
    "measure": "Run a command and report the energy, carbon and cost of the GPUs (and host) "
    "it used while it ran.",
    "greenest-window": "The start, mean intensity and saving of the greenest window of the "
    "grid's forecast for a job of --duration that must end within --within.",
    "carbon-gate": "Compare the grid's intensity now with --max-intensity: exit 0 (go) at or "
    "under it, 3 (defer) over it, 1 when no intensity is known.",
    "regions": "The carbon of --energy-kwh in each zone of the static table (or --regions), "
    "greenest first, with each figure's source and year.",
    "report": "What each group's GPUs cost, used, wasted and emitted over a period, from "
    "Prometheus, reconciled to the fleet's GPU cost, and what to change.",
    "analyze": "Energy, mean power, class mix, waste, joules per operation, right-sizing and "
    "advice for windows of a recording, through the live exporter's own analysis.",
}


def describe(commands: Mapping[str, argparse.ArgumentParser]) -> None:
    """Give the commands that have none their description line (serve's and check's are
    set where they are made)."""
    for name, text in ABOUT.items():
        if name in commands and commands[name].description is None:
            commands[name].description = text
