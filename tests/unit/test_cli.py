"""The command line: each command's flags, its help, --print-config, broken pipes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import yaml

from documentation import documentation
from greenops_exporter.cli import build_parser, main


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_top_level_help_lists_each_command_and_where_serve_flags_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in _commands():
        assert f"\n    {command}" in out, command
    assert "serve --help" in out


def test_every_serve_flag_says_what_it_does() -> None:
    serve = _commands()["serve"]
    for action in serve._actions:
        if action.option_strings:
            assert action.help and action.help != argparse.SUPPRESS, action.option_strings
    flags = {flag for action in serve._actions for flag in action.option_strings}
    assert {"--listen-address", "--backend", "--device-timeout", "--collector.gpm"} <= flags


def test_every_argument_of_every_command_says_what_it_does() -> None:
    """`--help` of each command explains each flag and positional (carbon-gate's
    --max-intensity, regions' --energy-kwh and analyze's recording had none), and
    greenest-window's says what its defaults are and that the window must END within
    --within, as greenest_window computes it."""
    for name, command in _commands().items():
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    green = {a.dest: a.help or "" for a in _commands()["greenest-window"]._actions}
    assert "default 4h" in green["duration"] and "default 24h" in green["within"]
    assert "must end within" in green["within"] and "may start" not in green["within"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["regions", "--energy-kwh", "1", "--listen-address", ":1"], "--listen-address"),
        (["carbon-gate", "--max-intensity", "100", "--backend", "sim"], "--backend"),
        (["greenest-window", "--collect-interval", "2"], "--collect-interval"),
        (["check", "--listen-address", ":1"], "--listen-address"),
        (["record", "--duration", "1", "--out", "x", "--web.config.file", "w"], "--web.config"),
        (["measure", "--hostname", "a", "--", "true"], "--hostname"),
    ],
)
def test_a_command_refuses_flags_that_mean_nothing_to_it(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    # the command's own usage and name, not the top level's
    err = capsys.readouterr().err
    assert f"usage: greenops-exporter {args[0]} [-h]" in err
    assert f"greenops-exporter {args[0]}: error: unrecognized arguments: {flag}" in err


def test_print_config_prints_the_values_in_effect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_NAME", "node-7")
    assert main(["--backend", "sim", "--collect-interval", "2", "--print-config"]) == 0
    tree = yaml.safe_load(capsys.readouterr().out)
    assert tree["collect"]["device_timeout_seconds"] == 1.6  # 0.8 x the interval
    assert tree["backend"]["sim"]["scenario"].endswith("scenarios/demo.yaml")
    assert tree["backend"]["sim"]["seed"] == 42  # the embedded demo scenario's own seed
    assert tree["labels"]["hostname_value"] == "node-7"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["regions", "--energy-kwh", "1"], 1),
        (["--backend", "sim", "--print-config"], 1),
        (["--help"], 0),  # argparse itself ignores a failed write of the help
    ],
)
def test_a_pipe_closed_early_ends_quietly(args: list[str], code: int) -> None:
    """`regions | head`: the reader is gone before the command writes; no traceback, no
    '[Errno 32] Broken pipe', and Python's own exit status for EPIPE (1)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already gone: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "greenops_exporter", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == code


def _gpu0(text: str) -> list[str]:
    return text.split("\nGPU 0: ", 1)[1].split("\n\n", 1)[0].strip().splitlines()


def test_the_readme_check_example_is_what_check_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's `check --backend sim` output against the real one: the same lines with the
    same labels; the values that depend on time (energy, PCIe bytes, read time) may differ."""
    readme = documentation()
    shown = readme.split("$ greenops-exporter check --backend sim\n", 1)[1].split("```", 1)[0]
    assert main(["check", "--backend", "sim"]) == 0
    real = capsys.readouterr().out
    assert shown.splitlines()[0] == real.splitlines()[0]  # backend: sim (...)
    want, got = _gpu0(shown), _gpu0(real)
    assert want[:4] == got[:4]  # name, uuid, bus; architecture; (un)supported capabilities
    assert [line[:25] for line in want] == [line[:25] for line in got]  # one read: its rows
    rows = readme.splitlines()
    table = next(line for line in rows if line.startswith("| `greenops-exporter check`"))
    assert "one read" in table and "two reads" not in table
