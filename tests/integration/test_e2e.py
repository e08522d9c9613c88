"""End to end with real servers: the demo stack (demo/stack.py): the exporter on a sim
fleet built so that every alert's condition occurs, a real Prometheus (Debian's) loading the
generated rules (test profile: the same expressions with second-long durations), a real
Alertmanager routing to a webhook receiver in this test; then every dashboard panel's query,
its template variables filled in, must return data."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "demo"))
from stack import Stack  # noqa: E402

ALERTS = {
    r["alert"]
    for g in yaml.safe_load((ROOT / "alerts" / "greenops.rules.yml").read_text())["groups"]
    for r in g["rules"]
    if "alert" in r
}
NEEDED = ("prometheus", "prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    any(shutil.which(n) is None for n in NEEDED) and not os.environ.get("CI"),
    reason="prometheus and prometheus-alertmanager (Debian packages) are installed by make test",
)


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, query) for every target, template variables filled in."""
    out = []
    for board in sorted((ROOT / "dashboards").glob("*.json")):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$hostname", "node-e2e")
                    .replace("$gpu", ".*")
                    .replace("$namespace", ".*")
                )
                out.append((board.name, panel["title"], expr))
    return out


def test_every_alert_arrives_and_every_panel_has_data(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    empty: list[str] = []
    host: dict[str, list] = {}

    async def run() -> None:
        await stack.start()
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and set(stack.peers.alerts) < ALERTS:
                for p in stack.processes:
                    assert p.poll() is None, (p.args, stack.log(p))
                await asyncio.sleep(1)
            for board, title, expr in panel_queries():
                if not query(stack.ports["prometheus"], expr):
                    empty.append(f"{board} / {title}: {expr}")
            for expr in (
                'greenops_host_energy_joules_total{zone="package"}',
                "greenops_host_pod_energy_joules_total",
                "hostname_part:greenops_node_energy_joules:rate5m",
            ):
                host[expr] = query(stack.ports["prometheus"], expr)
        finally:
            await stack.stop()

    asyncio.run(run())
    alerts = stack.peers.alerts
    missing = ALERTS - set(alerts)
    assert not missing, f"alerts that never arrived: {sorted(missing)}"
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in ("critical", "warning", "info")
        assert alert["annotations"]["runbook_url"].endswith("#" + name.lower())
    assert alerts["GreenopsGPUDown"]["labels"]["gpu"] == "4"
    assert alerts["GreenopsStrandedGPUMemory"]["labels"]["gpu"] == "1"
    assert alerts["GreenopsGPUThrottled"]["labels"]["reason"] == "hw_thermal_slowdown"
    assert alerts["GreenopsInferenceEnergyRegression"]["labels"]["model"] == "llama"
    assert len(panel_queries()) == 56  # every target of the five dashboards
    # the host: both sockets' RAPL packages, the GPU processes' pods' host shares (real
    # processes under the sim's pids), and the node split into GPU, CPU and DRAM by the rules
    packages = host['greenops_host_energy_joules_total{zone="package"}']
    assert {r["metric"]["package"] for r in packages} == {"0", "1"}
    assert all(r["metric"]["hostname"] == "node-e2e" for r in packages)
    pods = {r["metric"]["pod"] for r in host["greenops_host_pod_energy_joules_total"]}
    assert {"llama-0", "nb-alice"} <= pods
    parts = {
        r["metric"]["part"]: float(r["value"][1])
        for r in host["hostname_part:greenops_node_energy_joules:rate5m"]
    }
    assert set(parts) == {"gpu", "cpu", "dram"}
    assert parts["cpu"] == pytest.approx(182 + 156, rel=0.25)  # the watts the stack draws
    assert not empty, "panels without data:\n" + "\n".join(empty)
