"""Config: file < GREENOPS_* environment < flags; every error names its key path, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenops_exporter.cli import main
from greenops_exporter.config.models import (
    ConfigError,
    env_overrides,
    load_config,
    parse_listen_address,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config.server.listen_address == ":9479"
    assert config.backend.kind == "auto"
    assert config.collect.interval_seconds == 1.0
    assert config.collect.timeout == pytest.approx(0.8)
    assert config.collect.energy_anchor_seconds == 30.0
    assert config.labels.hostname is True


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "collect:\n  interval_seconds: 5\n  energy_anchor_seconds: 20\n"
        "backend:\n  kind: sim\nlabels:\n  hostname: false\n",
    )
    env = {
        "GREENOPS_COLLECT__INTERVAL_SECONDS": "2",
        "GREENOPS_LABELS__HOSTNAME": "true",
        "UNRELATED": "x",
    }
    config = load_config(path, environ=env, overrides={"collect": {"interval_seconds": 0.5}})
    assert config.collect.interval_seconds == 0.5  # flag wins
    assert config.collect.energy_anchor_seconds == 20  # only the file set it
    assert config.labels.hostname is True  # env beat the file
    assert config.backend.kind == "sim"


def test_env_values_keep_their_types() -> None:
    tree = env_overrides(
        {"GREENOPS_BACKEND__REPLAY__FILES": "[a.jsonl, b.jsonl]", "GREENOPS_LOG_LEVEL": "debug"}
    )
    assert tree == {"backend": {"replay": {"files": ["a.jsonl", "b.jsonl"]}}, "log_level": "debug"}


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("collect:\n  intervall_seconds: 2\n", {}, "collect.intervall_seconds: Extra inputs"),
        ("collect:\n  interval_seconds: fast\n", {}, "collect.interval_seconds: Input should be"),
        (
            "collect:\n  interval_seconds: -1\n",
            {},
            "collect.interval_seconds: Input should be greater than 0",
        ),
        (
            "backend:\n  kind: cuda\n",
            {},
            "backend.kind: Input should be 'auto', 'nvml', 'sim', 'replay' or 'dcgm'",
        ),
        (
            "backend:\n  kind: dcgm\n  dcgm:\n    url: localhost:9400/metrics\n",
            {},
            "backend.dcgm.url: String should match pattern",
        ),
        (
            "backend:\n  kind: dcgm\n",
            {"GREENOPS_BACKEND__DCGM__TIMEOUT_SECONDS": "0.9"},
            "backend.dcgm.timeout_seconds: 0.9 s must be shorter than the read deadline "
            "collect.device_timeout_seconds (0.8 s, 0.8 x collect.interval_seconds 1 s)",
        ),
        ("backend:\n  dcgm:\n    timeout_seconds: 0\n", {}, "backend.dcgm.timeout_seconds"),
        ("server:\n  listen_address: nonsense\n", {}, "server.listen_address"),
        ("backend:\n  kind: replay\n", {}, "replay.files"),
        ("host:\n  estimate: true\n", {}, "host: Value error, cpu_tdp_watts"),
        ("host:\n  cpu_tdp_watts: 0\n", {}, "host.cpu_tdp_watts: Input should be greater"),
        ("", {"GREENOPS_COLLECT__BOGUS": "1"}, "collect.bogus: Extra inputs"),
        ("- a\n- b\n", {}, "top level must be a mapping"),
        ("collect: [\n", {}, "not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ=env)
    assert message in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_cli_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "collect:\n  interval_seconds: 0\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "collect.interval_seconds" in err
    assert main(["--collect-interval", "-3", "--print-config"]) == 2
    assert "collect.interval_seconds" in capsys.readouterr().err


def test_cli_bad_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("gpus: [{model: nope}]\n")
    assert main(["check", "--backend", "sim", "--scenario", str(scenario)]) == 2
    assert "backend.sim.scenario" in capsys.readouterr().err


def test_print_config_shows_the_effective_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENOPS_COLLECT__ENERGY_ANCHOR_SECONDS", "7")
    path = write(tmp_path, "labels:\n  hostname_value: node-a\n")
    assert main(["--config", str(path), "--backend", "sim", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "kind: sim" in out
    assert "energy_anchor_seconds: 7.0" in out
    assert "hostname_value: node-a" in out


def test_listen_addresses() -> None:
    assert parse_listen_address(":9479") == ("0.0.0.0", 9479)
    assert parse_listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen_address("[::1]:9479") == ("::1", 9479)
    with pytest.raises(ValueError):
        parse_listen_address("localhost:99999")


def test_any_valid_interval_works_with_dcgm(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 6: `--collect-interval 0.5 --backend dcgm` was refused over two values
    the user never set (the page's 0.5 s deadline against the 0.4 s read deadline)."""
    assert main(["--backend", "dcgm", "--collect-interval", "0.5", "--print-config"]) == 0
    capsys.readouterr()
    for interval in (0.05, 0.5, 1.0, 60.0):
        env = {
            "GREENOPS_BACKEND__KIND": "dcgm",
            "GREENOPS_COLLECT__INTERVAL_SECONDS": str(interval),
        }
        config = load_config(None, environ=env)
        assert config.dcgm_timeout < config.collect.timeout  # the page within the read
        assert config.dcgm_timeout == min(0.5, 0.75 * 0.8 * interval)
    # a value the user did set is still checked, and the error names it
    env = {
        "GREENOPS_BACKEND__KIND": "dcgm",
        "GREENOPS_COLLECT__INTERVAL_SECONDS": "0.5",
        "GREENOPS_BACKEND__DCGM__TIMEOUT_SECONDS": "0.5",
    }
    with pytest.raises(ConfigError, match=r"backend\.dcgm\.timeout_seconds: 0\.5 s"):
        load_config(None, environ=env)


def test_dcgm_flag_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(None, environ={})
    assert config.backend.dcgm.url == "http://127.0.0.1:9400/metrics"
    assert config.backend.dcgm.timeout_seconds is None and config.dcgm_timeout == 0.5
    url = "http://nvidia-dcgm-exporter.gpu-operator.svc:9400/metrics"
    assert main(["--backend", "dcgm", "--dcgm-url", url, "--print-config"]) == 0
    assert f"url: {url}" in capsys.readouterr().out
    assert main(["check", "--backend", "dcgm", "--dcgm-url", "ftp://x/metrics"]) == 2
    assert "backend.dcgm.url" in capsys.readouterr().err


def test_auto_never_picks_dcgm() -> None:
    """A page on :9400 is no proof of whose GPUs it shows: dcgm only when configured."""
    from fakenvml import FakeNvml
    from greenops_exporter.backends import choose_backend

    missing = FakeNvml()
    missing.library_missing = True
    backend, reason = choose_backend("auto", nvml=missing, dcgm_url="http://127.0.0.1:9400/")
    assert backend.name == "sim" and "dcgm" not in reason
    backend, _ = choose_backend("auto", nvml=FakeNvml())
    assert backend.name == "nvml"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("compute_sm_active", -1),
        ("memory_dram_active", 1.5),
        ("compute_tensor_active", -0.1),
        ("io_sm_active_max", 2),
        ("busy_activity", -1),
        ("basic_memory_utilization", 60),
        ("basic_compute_utilization", 1.01),
        ("basic_io_memory_utilization_max", -0.5),
        ("io_bytes_per_second", -1),
    ],
)
def test_bottleneck_thresholds_out_of_range_are_refused(
    tmp_path: Path, key: str, value: float
) -> None:
    """The ratios are shares (0..1): -1 or 60 would switch a class on or off for every GPU."""
    path = write(tmp_path, f"analysis:\n  bottleneck:\n    {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"analysis\.bottleneck\.{key}: Input should be"):
        load_config(path, environ={})


def test_bottleneck_config_covers_every_threshold(tmp_path: Path) -> None:
    """Every classifier threshold can be set, and reaches the classifier."""
    from dataclasses import fields

    from greenops_exporter.analysis.bottleneck import Thresholds

    names = [f.name for f in fields(Thresholds)]
    text = "".join(f"    {name}: {0.01 * (i + 1)}\n" for i, name in enumerate(names))
    config = load_config(write(tmp_path, f"analysis:\n  bottleneck:\n{text}"), environ={})
    got = config.analysis.bottleneck.thresholds()
    assert [getattr(got, n) for n in names] == [0.01 * (i + 1) for i in range(len(names))]
    assert load_config(None, environ={}).analysis.bottleneck.thresholds() == Thresholds()


def test_device_timeout_must_be_shorter_than_the_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A deadline past the interval lets one hung GPU push back the next cycle."""
    assert main(["--collect-interval", "1", "--device-timeout", "1.5", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "device_timeout_seconds: 1.5 s must be shorter than" in err
    assert "[from --device-timeout]" in err
    # equal is no shorter: the deadline would end just as the next cycle is due
    assert main(["--collect-interval", "1", "--device-timeout", "1", "--print-config"]) == 2
    assert "device_timeout_seconds: 1 s must be shorter than" in capsys.readouterr().err
    assert main(["--collect-interval", "2", "--device-timeout", "1.5", "--print-config"]) == 0


def test_errors_say_where_the_value_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "collect:\n  interval_seconds: 2\n\n  energy_anchor_seconds: -1\n"
        "carbon:\n  sources:\n    - kind: uk\n      url: http://x\n"
        "    - kind: electricitymaps\n      url: http://y\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert "collect.energy_anchor_seconds: Input should be greater than or equal to 0 " in message
    assert f"(got -1) [from {path} line 4]" in message
    assert "carbon.sources.1: Value error, zone: the electricitymaps source needs a zone" in message
    assert f"(or region/location) [from {path} line 9]" in message
    # the environment replaces the file's value, so the error names the variable
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={"GREENOPS_COLLECT__ENERGY_ANCHOR_SECONDS": "-2"})
    assert "(got -2) [from $GREENOPS_COLLECT__ENERGY_ANCHOR_SECONDS]" in str(err.value)
    # and a flag replaces both
    monkeypatch.setenv("GREENOPS_COLLECT__ENERGY_ANCHOR_SECONDS", "-2")
    assert main(["--config", str(path), "--energy-anchor-interval", "-3", "--print-config"]) == 2
    assert "(got -3.0) [from --energy-anchor-interval]" in capsys.readouterr().err
    # a check across keys names the key it is about
    monkeypatch.delenv("GREENOPS_COLLECT__ENERGY_ANCHOR_SECONDS")
    monkeypatch.setenv("GREENOPS_BACKEND__DCGM__TIMEOUT_SECONDS", "0.9")
    assert main(["--backend", "dcgm", "--print-config"]) == 2
    assert "[from $GREENOPS_BACKEND__DCGM__TIMEOUT_SECONDS]" in capsys.readouterr().err


def test_greenops_config_names_the_file_and_the_flag_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write(tmp_path, "collect:\n  interval_seconds: 7\n")
    from_flag = tmp_path / "flag.yaml"
    from_flag.write_text("collect:\n  interval_seconds: 3\n")
    monkeypatch.setenv("GREENOPS_CONFIG", str(from_env))
    assert main(["--print-config"]) == 0
    assert "interval_seconds: 7.0" in capsys.readouterr().out
    assert main(["--config", str(from_flag), "--print-config"]) == 0
    assert "interval_seconds: 3.0" in capsys.readouterr().out
    monkeypatch.setenv("GREENOPS_CONFIG", str(tmp_path / "gone.yaml"))
    assert main(["--print-config"]) == 2
    err = capsys.readouterr().err
    assert f"config file {tmp_path / 'gone.yaml'} (from $GREENOPS_CONFIG)" in err


def test_a_value_is_shown_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A validator's message that shows the value gets no second '(got ...)'."""
    assert main(["--listen-address", "nonsense", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "expected HOST:PORT or :PORT, got 'nonsense'" in err
    assert err.count("nonsense") == 1


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "collect:\n  intervall_seconds: 2\n",
            {},
            "collect.intervall_seconds: Extra inputs are not permitted; did you mean "
            "'interval_seconds'? [from {path} line 2]",
        ),
        (
            "colect:\n  interval_seconds: 2\n",
            {},
            "colect: Extra inputs are not permitted; did you mean 'collect'? [from {path} line 1]",
        ),
        (
            "",
            {"GREENOPS_COLLECT__ENERGY_ANCHOR_SECOND": "5"},
            "collect.energy_anchor_second: Extra inputs are not permitted; did you mean "
            "'energy_anchor_seconds'? [from $GREENOPS_COLLECT__ENERGY_ANCHOR_SECOND]",
        ),
        (  # through a list: carbon.sources is a list of sources
            "carbon:\n  sources:\n    - {kind: electricity_maps, zone: DE, tokn: x}\n",
            {},
            "carbon.sources.0.tokn: Extra inputs are not permitted; did you mean 'token'?",
        ),
        (  # through a mapping: carbon.embodied is model name -> figures
            "carbon:\n  embodied:\n    h100-sxm: {kg: 1, lifetim_years: 5}\n",
            {},
            "did you mean 'lifetime_years'?",
        ),
        ("collect:\n  frobnicate: 2\n", {}, "collect.frobnicate: Extra inputs are not permitted ["),
    ],
)
def test_a_misspelt_key_gets_did_you_mean(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    """issue 20: a misspelt command got "did you mean", a misspelt config key did not."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    assert message.replace("{path}", str(path)) in str(err.value)
