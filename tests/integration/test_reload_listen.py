"""SIGHUP that moves the listener: the new address is bound before the old one is closed,
and an address that cannot be bound leaves the running exporter exactly as it was."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from test_serve import free_port

SERVE = [sys.executable, "-m", "greenops_exporter", "serve", "--backend", "sim"]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def reload_failures(port: int) -> float:
    status, body = get(port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    [sample] = families["greenops_config_reload_failures"].samples
    return float(sample.value)


def wait_until(predicate, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, KeyError):  # not answering yet, or no such series
            pass
        time.sleep(0.1)
    return False


def config_text(port: int) -> str:
    return f"server: {{listen_address: '127.0.0.1:{port}'}}\ncollect: {{interval_seconds: 0.2}}\n"


def test_sighup_onto_an_address_in_use_keeps_serving(tmp_path: Path) -> None:
    """Reproduces the issue: the reload closed the old listener, then failed to bind the
    new one (Errno 98) and the process exited 1."""
    first, second = free_port(), free_port()
    config = tmp_path / "c.yaml"
    config.write_text(config_text(first))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    proc = subprocess.Popen(
        [*SERVE, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    squatter = socket.socket()
    try:
        assert wait_until(lambda: get(first, "/readyz")[0] == 200)
        squatter.bind(("127.0.0.1", second))
        squatter.listen(1)
        config.write_text(config_text(second))
        proc.send_signal(signal.SIGHUP)
        # the refusal is counted, unless the process died of it (what it did before)
        wait_until(lambda: proc.poll() is not None or reload_failures(first) == 1)
        assert proc.poll() is None, proc.communicate()[0]  # still running
        assert get(first, "/readyz")[0] == 200  # on the old address, with the old config
        assert reload_failures(first) == 1

        squatter.close()  # the address is free now: the next SIGHUP moves there
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: get(second, "/readyz")[0] == 200)
        assert reload_failures(second) == 1  # counted for the life of the process
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", first)) != 0  # the old address released
    finally:
        squatter.close()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, out
    refused = [line for line in out.splitlines() if "config reload refused" in line]
    assert len(refused) == 1, out  # one line for the one refusal
    assert f"cannot listen on 127.0.0.1:{second}" in refused[0]
    assert "Address already in use" in refused[0]
    assert "config reloaded" in out
