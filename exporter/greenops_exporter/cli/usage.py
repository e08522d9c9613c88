"""Checks of the command line that argparse cannot express: a first word that is no
command, and flags that mean something only beside another flag or value."""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Sequence

from greenops_exporter.config.errors import UsageError
from greenops_exporter.config.models import Config, ConfigError


def replay_flag(config: Config, backend_flag: str | None) -> Config:
    """`--replay FILE` means replaying: it implies `--backend replay` where the backend is
    auto, and contradicts any other backend, which would ignore the file without a word.
    A ConfigError: the backend may come from the file, which a SIGHUP reload reads again."""
    kind = config.backend.kind
    if kind == "auto":
        config.backend.kind = "replay"
    elif kind != "replay":
        where = (
            f"--backend {kind}"
            if backend_flag
            else f"backend.kind: {kind} (from the config file or $GREENOPS_BACKEND__KIND)"
        )
        raise ConfigError(f"--replay FILE plays recordings with --backend replay, not {where}")
    return config


def analyze_flags(
    args: argparse.Namespace,
) -> tuple[float | None, float, tuple[float, float] | None]:
    """analyze's intensity, PUE and --as-exported intervals; a flag that needs another one
    is refused without it rather than ignored."""
    from greenops_exporter.commands.carbon import (
        check_pue,  # the carbon commands' modules: only when used
    )

    if args.pue is not None and args.intensity is None:
        raise UsageError("--pue needs --intensity (the PUE scales the carbon of the energy)")
    if args.intensity is not None and not 0 <= args.intensity < math.inf:
        raise UsageError(f"--intensity: {args.intensity:g} must be 0 or more gCO2e/kWh")
    pue = 1.0 if args.pue is None else check_pue(args.pue)
    for flag, value in (
        ("--collect-interval", args.collect_interval),
        ("--energy-anchor-interval", args.energy_anchor_interval),
    ):
        if value is not None and not args.as_exported:
            raise UsageError(f"{flag} needs --as-exported (it sets how serve would have read)")
    if not args.as_exported:
        return args.intensity, pue, None
    interval = 1.0 if args.collect_interval is None else args.collect_interval
    anchor = 30.0 if args.energy_anchor_interval is None else args.energy_anchor_interval
    if not 0 < interval < math.inf:
        raise UsageError(f"--collect-interval: {interval:g} must be more than 0 (and finite)")
    if not 0 <= anchor < math.inf:
        raise UsageError(f"--energy-anchor-interval: {anchor:g} must be 0 or more (and finite)")
    return args.intensity, pue, (interval, anchor)


def unknown_command(name: str, commands: Sequence[str]) -> str:
    """serve, the default, takes no word of its own: a first word is a command or a typo."""
    close = difflib.get_close_matches(name, commands, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown command {name!r}{guess} "
        f"(commands: {', '.join(commands)}; see greenops-exporter --help)"
    )
