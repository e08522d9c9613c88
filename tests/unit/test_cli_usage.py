"""Usage errors of the command line: each says what is wrong with which flag, and exits 2."""

from __future__ import annotations

import pytest

from greenops_exporter.cli import main

COMMAND_LIST = (
    "(commands: serve, check, analyze, record, measure, greenest-window, carbon-gate, "
    "regions; see greenops-exporter --help)"
)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["chek"], "unknown command 'chek'; did you mean 'check'? "),
        (["frobnicate", "--json"], "unknown command 'frobnicate' "),
        (["analyse", "x.jsonl"], "unknown command 'analyse'; did you mean 'analyze'? "),
    ],
)
def test_an_unknown_command_is_named(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """trial finding 8: a typo printed serve's usage and `unrecognized arguments`."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"greenops-exporter: {said}{COMMAND_LIST}\n"


def test_a_first_flag_is_still_serve_s(capsys: pytest.CaptureFixture[str]) -> None:
    """serve is the default command: a first argument that is a flag belongs to it."""
    assert main(["--backend", "sim", "--print-config"]) == 0
    assert "kind: sim" in capsys.readouterr().out
