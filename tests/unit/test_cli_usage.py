"""Usage errors of the command line: each says what is wrong with which flag, and exits 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakenvml import FIXTURES
from greenops_exporter.cli import main
from greenops_exporter.sources.carbon_intensity import STATIC
from helpers import cli

COMMAND_LIST = (
    "(commands: serve, check, analyze, record, measure, greenest-window, carbon-gate, "
    "regions, report; see greenops-exporter --help)"
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


TRACE = str(FIXTURES / "trace_a.jsonl")


def _analyze_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["analyze", TRACE, "--json", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_analyze_reads_greenops_variables_without_a_config_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """trial finding 14: GREENOPS_ANALYSIS__* applied only beside --config."""
    monkeypatch.delenv("GREENOPS_CONFIG", raising=False)
    default = _analyze_json(capsys)["windows"][0]["class_share"]
    # a GPU counts as busy only from 99 % activity: trace_a's launch-bound phase (overhead)
    # becomes idle; exact values, the recording and the classifier are fixed
    monkeypatch.setenv("GREENOPS_ANALYSIS__BOTTLENECK__BUSY_ACTIVITY", "0.99")
    strict = _analyze_json(capsys)["windows"][0]["class_share"]
    assert (default["overhead"], default["idle"]) == (0.3231, 0.2937)
    assert (strict["overhead"], strict["idle"]) == (0.0, 0.6168)
    # and a bad one is a config error naming the variable, as for every other command
    monkeypatch.setenv("GREENOPS_ANALYSIS__BOTTLENECK__BUSY_ACTIVITY", "5")
    assert main(["analyze", TRACE]) == 2
    err = capsys.readouterr().err
    assert "analysis.bottleneck.busy_activity: Input should be less than or equal to 1" in err
    assert "[from $GREENOPS_ANALYSIS__BOTTLENECK__BUSY_ACTIVITY]" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--intensity", "300", "--pue", "5"], "--pue: 5 is outside the allowed range 1.0-3.0"),
        (["--intensity", "300", "--pue", "0.9"], "--pue: 0.9 is outside the allowed range"),
        (["--pue", "1.2"], "--pue needs --intensity"),
        (["--intensity", "-1"], "--intensity: -1 must be 0 or more gCO2e/kWh"),
        (["--collect-interval", "2"], "--collect-interval needs --as-exported"),
        (["--energy-anchor-interval", "5"], "--energy-anchor-interval needs --as-exported"),
        (["--as-exported", "--collect-interval", "0"], "--collect-interval: 0 must be more"),
        # issue 20: nan crashed (IndexError), nan/inf OPS printed J/op nan or 0, --json
        # emitted bare NaN/Infinity
        (["--window", "nan:5"], "--window 'nan:5': START, END and OPS must be finite"),
        (["--window", "10:inf"], "--window '10:inf': START, END and OPS must be finite"),
        (["--window", "10:20:nan", "--json"], "--window '10:20:nan': START, END and OPS must"),
        (["--window", "10:20:inf"], "--window '10:20:inf': START, END and OPS must be finite"),
        (["--intensity", "inf"], "--intensity: inf must be 0 or more gCO2e/kWh"),
        (["--intensity", "nan"], "--intensity: nan must be 0 or more gCO2e/kWh"),
        (["--as-exported", "--collect-interval", "inf"], "--collect-interval: inf must be"),
        (["--as-exported", "--energy-anchor-interval", "nan"], "--energy-anchor-interval: nan"),
    ],
)
def test_analyze_refuses_flags_it_would_ignore_or_out_of_range(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """trial finding 15: --pue without --intensity, --collect-interval without --as-exported
    were ignored, and --pue 5 accepted where carbon.pue stops at 3."""
    assert main(["analyze", TRACE, *args]) == 2
    assert f"greenops-exporter: {message}" in capsys.readouterr().err


def test_analyze_pue_scales_the_carbon(capsys: pytest.CaptureFixture[str]) -> None:
    one = _analyze_json(capsys, "--intensity", "300")["windows"][0]
    more = _analyze_json(capsys, "--intensity", "300", "--pue", "1.5")["windows"][0]
    # 1.5 times the grams, within the rounding of the printed figure (3 decimals)
    assert more["carbon_grams_operational"] == pytest.approx(
        1.5 * one["carbon_grams_operational"], abs=0.002
    )


def _regions(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["regions", "--energy-kwh", "1", *args])
    out, err = capsys.readouterr()
    return code, [line.split()[0] for line in out.splitlines()[2:]], err


def test_regions_lists_world_and_refuses_an_empty_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """trial finding 15: world was left out of the default list, and `--regions ''` listed
    every zone while `GB,,FR` was an error."""
    code, rows, _ = _regions(capsys)
    assert code == 0 and "world" in rows and "GB" in rows
    assert len(rows) == len(STATIC)
    for given in ("", "GB,,FR", ","):
        code, rows, err = _regions(capsys, "--regions", given)
        assert (code, rows) == (2, [])
        assert "--regions: an empty zone name" in err


def test_replay_flag_implies_the_replay_backend_or_names_the_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """trial finding 6: `serve --replay FILE` without `--backend replay` served the sim
    fleet without a word."""
    monkeypatch.delenv("GREENOPS_BACKEND__KIND", raising=False)
    assert main(["--replay", TRACE, "--print-config"]) == 0  # auto: replay is meant
    assert "  kind: replay\n" in capsys.readouterr().out
    assert main(["check", "--replay", TRACE]) == 0
    assert "backend: replay (configured: replay)" in capsys.readouterr().out
    for backend in ("sim", "nvml", "dcgm"):
        assert main(["--backend", backend, "--replay", TRACE, "--print-config"]) == 2
        assert capsys.readouterr().err == (
            "greenops-exporter: config error: --replay FILE plays recordings with "
            f"--backend replay, not --backend {backend}\n"
        )
    config = tmp_path / "c.yaml"
    config.write_text("backend:\n  kind: sim\n")
    assert main(["--config", str(config), "--replay", TRACE, "--print-config"]) == 2
    assert "not backend.kind: sim (from the config file or $GREENOPS_BACKEND__KIND)" in (
        capsys.readouterr().err
    )


def test_a_recording_that_cannot_be_played_is_a_config_error_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """trial finding 7: `--backend replay --replay /nope.jsonl` started and retried every
    10 s forever, while a missing scenario exits 2."""
    missing = tmp_path / "nope.jsonl"
    one = tmp_path / "one.jsonl"
    one.write_text(Path(TRACE).read_text().splitlines()[0] + "\n")
    for recording, why in (
        (missing, f"cannot read recording {missing}: No such file or directory"),
        (one, f"{one}: replay needs samples at two moments at least"),
    ):
        for command in (["check"], ["record", "--duration", "1", "--out", str(tmp_path / "r")]):
            assert main([*command, "--backend", "replay", "--replay", str(recording)]) == 2
            err = capsys.readouterr().err
            assert err == f"greenops-exporter: config error: backend.replay.files: {why}\n"
    # serve too, before it binds or serves anything
    result = cli("--backend", "replay", "--replay", str(missing), "--listen-address", ":0")
    assert result.returncode == 2
    assert f"cannot read recording {missing}" in result.stderr


@pytest.mark.parametrize("energy", ["nan", "inf", "-1"])
def test_regions_refuses_energy_that_is_not_a_finite_amount(
    energy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 20: `--energy-kwh nan` printed a table of nan and exited 0."""
    assert main(["regions", "--energy-kwh", energy]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"--energy-kwh: {energy} is outside the allowed range (0 or more kWh)" in err


def test_analyze_reads_only_the_analysis_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 20: `analyze` failed on a bad GREENOPS_COLLECT__… variable (or collect key)
    although it reads only the analysis section; its own section is still checked, with
    "did you mean" for a misspelt key."""
    monkeypatch.delenv("GREENOPS_CONFIG", raising=False)
    default = _analyze_json(capsys)
    monkeypatch.setenv("GREENOPS_COLLECT__INTERVAL_SECONDS", "-5")
    monkeypatch.setenv("GREENOPS_COLLECT__BOGUS", "1")
    config = tmp_path / "c.yaml"
    config.write_text("backend:\n  kind: cuda\nanalysis:\n  bottleneck:\n    busy_activity: 0.99\n")
    assert _analyze_json(capsys) == default
    strict = _analyze_json(capsys, "--config", str(config))["windows"][0]["class_share"]
    assert (strict["overhead"], strict["idle"]) == (0.0, 0.6168)  # as from the variable
    config.write_text("analysis:\n  bottleneck:\n    busy_activty: 0.99\n")
    assert main(["analyze", TRACE, "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        "greenops-exporter: config error: analysis.bottleneck.busy_activty: Extra inputs are "
        f"not permitted; did you mean 'busy_activity'? [from {config} line 3]\n"
    )


def test_every_command_s_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    """issue 20: five commands' --help went from the usage straight to the flags. Each
    opens with a description paragraph, a sentence of its own (not a flag's help)."""
    from greenops_exporter.cli.main import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        paragraphs = capsys.readouterr().out.split("\n\n")
        assert paragraphs[0].startswith(f"usage: greenops-exporter {command} ")
        about = " ".join(paragraphs[1].split())
        assert about[0].isupper() and about.endswith("."), (command, about)
        assert not about.startswith(("options:", "positional arguments:")), command
