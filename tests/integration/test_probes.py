"""Every shipped health probe, read from the shipped files and run against a real exporter
with basic auth (and TLS): the DaemonSet's kubelet probes of each overlay (with and without
the `tls` component), the Dockerfile's HEALTHCHECK command as written, and the compose
file's healthcheck. A probe cannot carry a secret, so /healthz and /readyz answer without
credentials; everything else still asks for them."""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import ROOT, kubectl
from test_security import PASSWORD, start
from test_serve import Exporter

from greenops_exporter.config.models import Config
from pki import make_pki

OVERLAYS = ("prometheus-operator", "plain-prometheus", "reduced", "gpu-operator")
TLS_COMPONENT = ROOT / "deploy" / "kustomize" / "components" / "tls"


def secured(tmp: Path, tls: bool) -> Exporter:
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    lines = ["basic_auth_users:", f"  alice: '{hashed}'"]
    if tls:
        make_pki(tmp)
        lines += ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key"]
    config = tmp / "web.yml"
    config.write_text("\n".join(lines) + "\n")
    return start(config)


@pytest.fixture(scope="module")
def exporters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Exporter]]:
    """One exporter with basic auth over plain HTTP, one with TLS and basic auth."""
    running = {
        "http": secured(tmp_path_factory.mktemp("http"), tls=False),
        "https": secured(tmp_path_factory.mktemp("https"), tls=True),
    }
    yield running
    for exporter in running.values():
        exporter.stop()


def kubelet_get(scheme: str, port: int, path: str) -> int:
    """What a kubelet httpGet probe does: no credentials, no certificate verification."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"{scheme.lower()}://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0  # no answer: the probe fails


def probe_passes(scheme: str, port: int, path: str) -> bool:
    """The kubelet counts 200-399 as success; readiness waits for the first collection."""
    deadline = time.monotonic() + 15
    while True:
        status = kubelet_get(scheme, port, path)
        if 200 <= status < 400 or time.monotonic() > deadline:
            return 200 <= status < 400
        time.sleep(0.1)


def rendered(overlay: str, tmp: Path, tls: bool) -> dict[str, Any]:
    """The exporter container of the overlay's DaemonSet, through `kubectl kustomize`."""
    if tls:  # how a user adds the component: a kustomization of their own
        here = tmp / overlay
        here.mkdir()
        relative = os.path.relpath(ROOT / "deploy" / "kustomize" / "overlays" / overlay, here)
        component = os.path.relpath(TLS_COMPONENT, here)
        (here / "kustomization.yaml").write_text(
            f"resources: [{relative}]\ncomponents: [{component}]\n"
        )
        directory = here
    else:
        directory = ROOT / "deploy" / "kustomize" / "overlays" / overlay
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [daemonset] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "DaemonSet"]
    container: dict[str, Any] = daemonset["spec"]["template"]["spec"]["containers"][0]
    return container


def probes(container: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(scheme, path, container port) of the liveness and readiness probes."""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    out = []
    for kind in ("livenessProbe", "readinessProbe"):
        get = container[kind]["httpGet"]
        port = get["port"]
        out.append((get.get("scheme", "HTTP"), get["path"], ports.get(port, port)))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubelet_probes_pass_on_a_secured_exporter(
    overlay: str, exporters: dict[str, Exporter], tmp_path: Path
) -> None:
    listen_port = int(Config().server.listen_address.rpartition(":")[2])
    for tls in (False, True):
        container = rendered(overlay, tmp_path, tls)
        found = probes(container)
        assert [path for _, path, _ in found] == ["/healthz", "/readyz"]
        for scheme, path, port in found:
            assert port == listen_port  # the port the exporter listens on by default
            assert scheme == ("HTTPS" if tls else "HTTP")
            exporter = exporters["https" if tls else "http"]
            assert probe_passes(scheme, exporter.port, path), (overlay, scheme, path)
        if tls:
            assert "--web.config.file=/etc/greenops-exporter/web/web.yml" in container["args"]
    # the check can fail: the plain probes against the TLS exporter do
    assert kubelet_get("HTTP", exporters["https"].port, "/healthz") == 0


def test_everything_but_the_health_endpoints_needs_credentials(
    exporters: dict[str, Exporter],
) -> None:
    for name, exporter in exporters.items():
        for path in ("/metrics", "/"):
            assert kubelet_get(name, exporter.port, path) == 401, (name, path)


def dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    [line] = [line.strip() for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    command = line.split(" CMD ", 1)[1].strip()
    return list(json.loads(command)) if command.startswith("[") else shlex.split(command)


def run_check(argv: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """The check as written; the image's `python` is the one with the package installed,
    here the test's interpreter. The port comes from the environment the exporter reads."""
    assert argv[0] == "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    env["GREENOPS_SERVER__LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    return subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, env=env, timeout=30
    )


def test_dockerfile_healthcheck_passes_on_a_secured_exporter(
    exporters: dict[str, Exporter],
) -> None:
    argv = dockerfile_healthcheck()
    for name, exporter in exporters.items():
        assert probe_passes(name, exporter.port, "/readyz")
        result = run_check(argv, exporter.port)
        assert result.returncode == 0, (name, result.stderr)
    from greenops_exporter.http.healthcheck import DEFAULT_ADDRESS

    assert Config().server.listen_address == DEFAULT_ADDRESS  # no variable: the same port


def test_healthcheck_fails_where_nothing_answers() -> None:
    from test_serve import free_port

    result = run_check(dockerfile_healthcheck(), free_port())
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_compose_healthcheck_passes_on_a_secured_exporter(
    exporters: dict[str, Exporter],
) -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "docker-compose.yaml").read_text())
    service = compose["services"]["exporter"]
    check = service.get("healthcheck")
    if check is None:  # the image's HEALTHCHECK applies: the image is the Dockerfile's
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        argv = dockerfile_healthcheck()
    else:
        assert not check.get("disable", False)
        test = check["test"]
        argv = shlex.split(test[1]) if test[0] == "CMD-SHELL" else list(test[1:])
    for exporter in exporters.values():
        assert run_check(argv, exporter.port).returncode == 0
