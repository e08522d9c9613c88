"""Config errors never carry a secret: not an unknown key's value, not a secret key's value
whatever its error, not a line of a broken YAML file; and a variable that a `*_env` key
names holds a secret, so it is never read as a GREENOPS_* config key."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenops_exporter.cli import main
from greenops_exporter.config.models import ConfigError, load_config
from greenops_exporter.http.web_config import load_web_config

EM_SOURCE = "carbon:\n  sources:\n    - kind: electricitymaps\n      url: http://127.0.0.1:1\n"


def _error(path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=environ)
    return str(err.value)


def test_a_variable_named_by_token_env_is_a_secret_not_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """trial finding 1: GREENOPS_EM_TOKEN was read as the unknown key `em_token`, stopped
    the exporter and printed the token."""
    path = tmp_path / "c.yaml"
    path.write_text(EM_SOURCE + "      zone: DE\n      token_env: GREENOPS_EM_TOKEN\n")
    monkeypatch.setenv("GREENOPS_EM_TOKEN", "secret123")
    assert main(["--config", str(path), "--print-config"]) == 0
    captured = capsys.readouterr()
    assert "secret123" not in captured.out + captured.err
    assert "token_env: GREENOPS_EM_TOKEN" in captured.out
    # the same through a variable that sets the sources, and for password_env
    sources = (
        "[{kind: watttime, url: 'http://127.0.0.1:1', zone: CAISO_NORTH, username: u, "
        "password_env: GREENOPS_WT_PASSWORD}]"
    )
    environ = {"GREENOPS_CARBON__SOURCES": sources, "GREENOPS_WT_PASSWORD": "hunter2"}
    config = load_config(None, environ=environ)
    assert config.carbon.sources[0].password_env == "GREENOPS_WT_PASSWORD"


def test_an_unknown_key_never_shows_its_value(tmp_path: Path) -> None:
    """trial finding 1 and 2: a stray variable or a misspelt `tokn:` holds a secret; the
    key's name and where it came from are enough to fix it."""
    path = tmp_path / "c.yaml"
    path.write_text(EM_SOURCE + "      zone: DE\n      tokn: supersecret\n")
    message = _error(path, {})
    assert "carbon.sources.0.tokn: Extra inputs are not permitted" in message
    assert f"[from {path} line 6]" in message
    assert "supersecret" not in message
    message = _error(None, {"GREENOPS_EM_TOKN": "s3cr3t"})
    assert message == "em_tokn: Extra inputs are not permitted [from $GREENOPS_EM_TOKN]"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("      token: 12345\n", "carbon.sources.0.token"),  # digits: not a string
        ("      password: 987654\n", "carbon.sources.0.password"),
        ("      token_env: 424242\n", "carbon.sources.0.token_env"),
    ],
)
def test_a_secret_key_never_shows_its_value(tmp_path: Path, line: str, key: str) -> None:
    """trial finding 2: `token: 12345` printed `(got 12345)`."""
    path = tmp_path / "c.yaml"
    path.write_text(EM_SOURCE + "      zone: DE\n" + line)
    message = _error(path, {})
    assert f"{key}: Input should be a valid string [from {path} line 6]" in message
    assert not any(v in message for v in ("12345", "987654", "424242"))


def test_a_broken_yaml_file_is_not_quoted(tmp_path: Path) -> None:
    """PyYAML's message quotes the line it stopped at, which may be a token's."""
    path = tmp_path / "c.yaml"
    path.write_text(EM_SOURCE + '      token: "abc123secret\n      zone: x: y\n')
    message = _error(path, {})
    assert "abc123secret" not in message
    assert message == (
        f"config file {path}: not valid YAML: while scanning a quoted scalar "
        "(line 5, column 14): found unexpected end of stream (line 7, column 1)"
    )


def test_only_secret_names_hide_their_value(tmp_path: Path) -> None:
    """Whole words: `prompt_tokens_metric` names a counter, and its value helps the fix;
    a web config's basic-auth hashes are secrets."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "inference:\n  sources:\n    - {name: a, kind: prometheus, url: 'http://x', "
        "requests_metric: r, prompt_tokens_metric: 5}\n"
    )
    assert "prompt_tokens_metric: Input should be a valid string (got 5)" in _error(path, {})
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: 20242024\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(web)
    assert "basic_auth_users.alice: Input should be a valid string" in str(err.value)
    assert "20242024" not in str(err.value)
