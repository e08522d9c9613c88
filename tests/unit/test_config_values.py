"""Config values as a user writes them: each error shows the value once, the README's sample
error is what the exporter prints, names are accepted in the case people write them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from documentation import documentation
from greenops_exporter.cli import main
from greenops_exporter.config.models import ConfigError, load_config

README = documentation()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:abc", "port must be a number, got '127.0.0.1:abc'"),
        (":70000", "port 70000 is outside 0..65535, got ':70000'"),
        ("nonsense", "expected HOST:PORT or :PORT, got 'nonsense'"),
    ],
)
def test_a_listen_address_error_shows_the_value_once(
    address: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """trial finding 19: `port must be a number, got 'abc' (got '127.0.0.1:abc')`."""
    assert main(["--listen-address", address, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"greenops-exporter: config error: server.listen_address: Value error, {message} "
        "[from --listen-address]\n"
    )


def test_the_readme_sample_error_is_what_the_exporter_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """trial finding 19: pydantic's `greater than 0` hid `(got 0)`: the value 0 is in the
    message's text, but only our own validators' messages show the value."""
    (sample,) = re.findall(r"config error: (collect\.interval_seconds: .*)\n", README)
    path = tmp_path / "config.yaml"
    path.write_text("collect:\n  interval_seconds: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    expected = sample.replace("/etc/greenops-exporter/config.yaml", str(path))
    assert str(err.value) == expected
    # the same for a float, a bound and a wrong type
    for text, shown in (
        ("carbon:\n  pue: 1\n", None),
        ("carbon:\n  pue: 0.5\n", "(got 0.5)"),
        ("collect:\n  interval_seconds: 3600.5\n", "less than or equal to 3600 (got 3600.5)"),
    ):
        path.write_text(text)
        if shown is None:
            assert load_config(path, environ={}).carbon.pue == 1.0
            continue
        with pytest.raises(ConfigError) as err:
            load_config(path, environ={})
        assert shown in str(err.value)


def test_the_log_level_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    """trial finding 19: GREENOPS_LOG_LEVEL=WARNING, as Python's logging spells it, was refused."""
    assert load_config(None, environ={"GREENOPS_LOG_LEVEL": "WARNING"}).log_level == "warning"
    assert load_config(None, environ={"GREENOPS_LOG_LEVEL": "Debug"}).log_level == "debug"
    assert main(["--log-level", "ERROR", "--print-config"]) == 0
    assert "log_level: error" in capsys.readouterr().out
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"GREENOPS_LOG_LEVEL": "LOUD"})
    assert "log_level: Input should be 'debug', 'info', 'warning' or 'error'" in str(err.value)
