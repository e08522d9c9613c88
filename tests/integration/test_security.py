"""TLS, mTLS and basic auth from an exporter-toolkit web config, on 127.0.0.1 with
certificates made by the test; and no secret ever leaves the process."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from test_serve import Exporter, free_port

from documentation import documentation
from helpers import cli
from pki import OPENSSL, make_pki

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl makes the test certificates")
PASSWORD = "correct-horse-PLANTED-SECRET"


def web_config(tmp: Path, pki: dict[str, Path], mtls: bool) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    lines = [
        "tls_server_config:",
        f"  cert_file: {pki['server.crt']}",
        f"  key_file: {pki['server.key']}",
        "  min_version: TLS12",
    ]
    if mtls:
        lines += [
            "  client_auth_type: RequireAndVerifyClientCert",
            f"  client_ca_file: {pki['ca.crt']}",
        ]
    lines += ["basic_auth_users:", f"  alice: '{hashed}'"]
    path = tmp / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def get(url: str, context: ssl.SSLContext, user: str | None = None, password: str = "") -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def client_context(pki: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    if with_cert:
        context.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    return context


def start(config: Path) -> Exporter:
    exporter = Exporter(
        "--backend", "sim", "--collect-interval", "0.5", "--web.config.file", str(config)
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", exporter.port)) == 0:
                return exporter
        time.sleep(0.1)
    exporter.stop()
    raise AssertionError("exporter did not listen")


def test_tls_and_basic_auth(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    exporter = start(web_config(tmp_path, pki, mtls=False))
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    context = client_context(pki, with_cert=False)
    try:
        assert get(url, context) == 401  # no credentials
        assert get(url, context, "alice", "wrong") == 401
        assert get(url, context, "mallory", PASSWORD) == 401
        assert get(url, context, "alice", PASSWORD) == 200
        assert get(url, context, "alice", PASSWORD) == 200  # the remembered check
        # what is remembered is the user *and* password: a wrong one is still refused
        assert get(url, context, "alice", "wrong") == 401
        assert get(url, context, "alice", PASSWORD + "x") == 401
        # plain HTTP to the TLS port fails
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5)
    finally:
        _, _, out = exporter.stop()
    assert PASSWORD not in out


def test_mtls_requires_a_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    exporter = start(web_config(tmp_path, pki, mtls=True))
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    try:
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            get(url, client_context(pki, with_cert=False), "alice", PASSWORD)
        assert get(url, client_context(pki, with_cert=True), "alice", PASSWORD) == 200
    finally:
        exporter.stop()


def serve_with(web_config: Path) -> subprocess.CompletedProcess[str]:
    return cli(
        "--web.config.file",
        str(web_config),
        "--backend",
        "sim",
        "--listen-address",
        f"127.0.0.1:{free_port()}",
    )


def test_bad_web_configs_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  alice: plaintext\n")
    result = serve_with(bad)
    assert result.returncode == 2 and "basic_auth_users.alice: not a bcrypt hash" in result.stderr
    # the web config is read before the backend is chosen: no line about a backend not used
    assert "backend" not in result.stderr, result.stderr
    bad.write_text(
        "tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n  colour: red\n"
    )
    result = serve_with(bad)
    assert result.returncode == 2 and "tls_server_config.colour" in result.stderr


def test_a_planted_secret_appears_nowhere(tmp_path: Path) -> None:
    """Carbon API token from a file, from the environment and inline: not in the log, not in
    /metrics, not in --print-config, not in the error the failing source reports."""
    secret_file = tmp_path / "token"
    secret_file.write_text("FILE-PLANTED-SECRET\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon:\n  sources:\n"
        "    - {kind: electricitymaps, url: 'http://127.0.0.1:1', zone: DE,\n"
        "       token: INLINE-PLANTED-SECRET, interval_seconds: 0.5, timeout_seconds: 0.2}\n"
        "    - {kind: electricitymaps, name: em-fr, url: 'http://127.0.0.1:1', zone: FR,\n"
        f"       token_file: '{secret_file}', interval_seconds: 0.5, timeout_seconds: 0.2}}\n"
        "    - {kind: watttime, url: 'http://127.0.0.1:1', zone: X, username: u,\n"
        "       password_env: WT_PASSWORD, interval_seconds: 0.5, timeout_seconds: 0.2}\n"
    )
    import os

    os.environ["WT_PASSWORD"] = "ENV-PLANTED-SECRET"
    try:
        exporter = Exporter(
            "--config",
            str(config),
            "--backend",
            "sim",
            "--collect-interval",
            "0.3",
            "--log-level",
            "debug",
        )
        exporter.wait_ready()
        time.sleep(2)
        metrics = exporter.get("/metrics")[2].decode()
        page = exporter.get("/")[2].decode()
        _, _, log = exporter.stop()
        printed = cli("--config", str(config), "--print-config").stdout
    finally:
        del os.environ["WT_PASSWORD"]
    assert "is down" in log  # the sources really failed and said so
    assert 'greenops_source_up{kind="electricitymaps"' in metrics
    for text in (metrics, page, log, printed):
        assert "PLANTED-SECRET" not in text


def test_relative_certificate_names_are_read_beside_the_web_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As exporter-toolkit reads them: the same file works for node_exporter, whatever the
    working directory of the process."""
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    config = pki_dir / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the exporter starts here, where no server.crt lies
    exporter = start(config)
    try:
        url = f"https://127.0.0.1:{exporter.port}/readyz"
        deadline = time.monotonic() + 15
        while get(url, client_context(pki, with_cert=False)) != 200:
            assert time.monotonic() < deadline, "never ready over TLS"
            time.sleep(0.1)
    finally:
        code, _, out = exporter.stop()
    assert code == 0, out


def test_a_missing_certificate_is_named_with_its_key(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: gone.key\n"
    )
    result = serve_with(config)
    assert result.returncode == 2, result.stderr
    assert f"web config {config}: tls_server_config.key_file: cannot read " in result.stderr
    assert str(tmp_path / "gone.key") in result.stderr  # beside the web config
    assert "No such file or directory" in result.stderr


def test_the_readme_makes_a_bcrypt_hash_without_htpasswd(tmp_path: Path) -> None:
    """The README's one-liner, as written (the venv's python is the test's interpreter):
    its hash is one the exporter accepts and that checks the password typed."""
    import shlex
    import sys

    from greenops_exporter.http.web_config import load_web_config

    readme = documentation()
    [line] = [
        line
        for line in readme.splitlines()
        if line.startswith(".venv/bin/python -c 'import bcrypt")
    ]
    argv = shlex.split(line)
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,  # no terminal: getpass reads the password from stdin
    )
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert load_web_config(config).basic_auth_users == {"alice": hashed}
