"""The demo stack: the exporter on a sim fleet where every alert's condition occurs, a real
Prometheus with the rules (test profile: second-long durations, so alerts fire within a
minute or two), a real Alertmanager, and the HTTP peers the fleet talks to (a simulated
vLLM server, the UK carbon API's shape, and a webhook that prints the alerts). The host
plays a two-socket node: a powercap tree in the kernel's layout whose RAPL counters the
stack advances, and small real processes that burn a little CPU under the GPU processes'
pids, so host energy is split among them and joins their pods.

`make demo` runs it until Ctrl-C; the end-to-end test runs the same stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
from host_node import Node  # noqa: E402

SCENARIO = {
    "seed": 5,
    "local_pids": True,  # the stack starts real processes and puts their pids in
    "gpus": [
        {  # serving the inference source; compute-bound
            "model": "h100-sxm",
            "processes": [
                {
                    "pid": 11,
                    "command": "vllm",
                    "memory_bytes": 40 << 30,
                    "pod": "llama-0",
                    "namespace": "serving",
                    "container": "server",
                }
            ],
            "schedule": [{"phase": "compute", "seconds": 3600}],
        },
        {  # a notebook left open: idle, holding 30 GiB
            "model": "h100-sxm",
            "processes": [
                {
                    "pid": 12,
                    "command": "jupyter",
                    "memory_bytes": 30 << 30,
                    "pod": "nb-alice",
                    "namespace": "research",
                    "container": "nb",
                }
            ],
            "schedule": [{"phase": "stranded_memory", "seconds": 3600}],
        },
        {  # memory-bound and too hot
            "model": "a100-80gb",
            "throttle": ["hw_thermal_slowdown"],
            "processes": [
                {
                    "pid": 13,
                    "memory_bytes": 20 << 30,
                    "pod": "embed-0",
                    "namespace": "ml-train",
                    "container": "job",
                }
            ],
            "schedule": [{"phase": "memory", "seconds": 3600}],
        },
        {  # tiny kernels
            "model": "h100-sxm",
            "processes": [
                {
                    "pid": 14,
                    "memory_bytes": 4 << 30,
                    "pod": "tiny-0",
                    "namespace": "ml-train",
                    "container": "job",
                }
            ],
            "schedule": [{"phase": "overhead", "seconds": 3600}],
        },
        {  # falls off the bus after 5 s
            "model": "l4",
            "lost_after_seconds": 5,
            "schedule": [{"phase": "compute", "seconds": 3600}],
        },
    ],
}


class Peers:
    """The HTTP peers this test plays: an inference server, the UK carbon API, a webhook."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.alerts: dict[str, dict] = {}
        self.requests = 0.0
        self.last = time.monotonic()

    async def vllm(self, request: web.Request) -> web.Response:
        # 100 requests/s for 40 s, then 30/s: joules per request jump 3.3x (a regression)
        now = time.monotonic()
        rate = 100.0 if now - self.started < 40 else 30.0
        self.requests += rate * (now - self.last)
        self.last = now
        text = (
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="stop",model_name="llama"} '
            f"{self.requests}\n"
            "# TYPE vllm:prompt_tokens_total counter\n"
            f'vllm:prompt_tokens_total{{model_name="llama"}} {self.requests * 20}\n'
            "# TYPE vllm:generation_tokens_total counter\n"
            f'vllm:generation_tokens_total{{model_name="llama"}} {self.requests * 10}\n'
        )
        return web.Response(text=text)

    async def uk_now(self, request: web.Request) -> web.Response:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        return web.json_response({"data": [self.period(start, 180)]})

    async def uk_forecast(self, request: web.Request) -> web.Response:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        values = [180] * 6 + [60] * 10 + [220] * 32
        return web.json_response(
            {
                "data": [
                    self.period(start + timedelta(minutes=30 * i), v) for i, v in enumerate(values)
                ]
            }
        )

    @staticmethod
    def period(start: datetime, value: int) -> dict:
        return {
            "from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": value, "actual": None, "index": "moderate"},
        }

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body["alerts"]:
            if alert["status"] == "firing":
                self.alerts.setdefault(alert["labels"]["alertname"], alert)
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.vllm)
        app.router.add_get("/intensity", self.uk_now)
        app.router.add_get("/intensity/{start}/fw24h", self.uk_forecast)
        app.router.add_post("/alerts", self.webhook)
        return app


def prometheus_config(
    targets: list[str], alertmanager: str, rule_file: str, interval: str = "15s"
) -> dict:
    """The Prometheus config of the demo, the end-to-end test and deploy/compose alike."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rule_file],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "greenops", "static_configs": [{"targets": targets}]}],
    }


def alertmanager_config(webhook_url: str, wait: str = "30s") -> dict:
    """Everything to one webhook, grouped by alert name."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname"],
            "group_wait": wait,
            "group_interval": wait,
            "repeat_interval": "4h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": False}]}
        ],
    }


def scenario_with(pids: list[int]) -> dict:
    """The scenario with its processes' pids replaced by real ones, in order."""
    out = yaml.safe_load(yaml.safe_dump(SCENARIO))
    procs = [p for gpu in out["gpus"] for p in gpu.get("processes", [])]
    for process, pid in zip(procs, pids, strict=True):
        process["pid"] = pid
    return out


def process_count() -> int:
    return sum(len(gpu.get("processes", [])) for gpu in SCENARIO["gpus"])


def write_configs(tmp: Path, ports: dict[str, int], pids: list[int]) -> dict[str, Path]:
    peer = f"http://127.0.0.1:{ports['peers']}"
    (tmp / "scenario.yaml").write_text(yaml.safe_dump(scenario_with(pids)))
    (tmp / "exporter.yaml").write_text(
        yaml.safe_dump(
            {
                "server": {"listen_address": f"127.0.0.1:{ports['exporter']}"},
                "backend": {"kind": "sim", "sim": {"scenario": str(tmp / "scenario.yaml")}},
                "collect": {"interval_seconds": 0.5},
                "analysis": {"stranded_after_seconds": 5, "underutilization_window_seconds": 10},
                "labels": {"hostname_value": "node-e2e"},
                "kubernetes": {"pod_resources": "off", "cgroups": False},
                "host": {"powercap_root": str(tmp / "powercap")},
                "inference": {
                    "window_seconds": 10,
                    "sources": [
                        {
                            "name": "chat",
                            "kind": "vllm",
                            "url": f"{peer}/metrics",
                            "gpus": [0],
                            "interval_seconds": 1,
                        },
                    ],
                },
                "carbon": {
                    "zone": "GB",
                    "pue": 1.2,
                    "sources": [
                        {
                            "kind": "electricitymaps",
                            "url": "http://127.0.0.1:1",
                            "zone": "GB",
                            "token": "x",
                            "interval_seconds": 2,
                            "timeout_seconds": 0.5,
                        },
                        {"kind": "uk", "url": peer, "interval_seconds": 5},
                    ],
                },
                "cost": {"energy_price_per_kwh": 0.3, "gpu_hourly_price": {"default": 2.5}},
            }
        )
    )
    budgets = tmp / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump(
            {
                "budget_period_days": 30,
                "namespaces": {"ml-train": 10, "research": 10, "serving": 10},
            }
        )
    )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "alerts" / "generate.py"),
            "--profile",
            "test",
            "--budgets",
            str(budgets),
            "--out",
            str(tmp / "rules.yml"),
        ],
        check=True,
        capture_output=True,
    )
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            prometheus_config(
                # the second target never answers: GreenopsExporterAbsent's up == 0
                [f"127.0.0.1:{ports['exporter']}", "127.0.0.1:1"],
                f"127.0.0.1:{ports['alertmanager']}",
                str(tmp / "rules.yml"),
                interval="1s",
            )
        )
    )
    (tmp / "alertmanager.yml").write_text(
        yaml.safe_dump(alertmanager_config(f"{peer}/alerts", wait="1s"))
    )
    return {name: tmp / f"{name}.yml" for name in ("prometheus", "alertmanager")} | {
        "exporter": tmp / "exporter.yaml"
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """Starts and stops the three processes; the peers run on the caller's event loop."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {
            name: free_port() for name in ("exporter", "prometheus", "alertmanager", "peers")
        }
        self.peers = Peers()
        self.files: dict[str, Path] = {}  # written by start(), once the workloads' pids exist
        self.processes: list[subprocess.Popen[bytes]] = []
        self.node = Node(tmp / "powercap")
        self._runner: web.AppRunner | None = None

    def _start(self, *cmd: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
        log = (self.tmp / f"{Path(cmd[0]).name}.log").open("w")
        self.processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return (self.tmp / f"{Path(str(process.args[0])).name}.log").read_text()[-3000:]

    async def start(self) -> None:
        self._runner = web.AppRunner(self.peers.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.ports["peers"]).start()
        pids = self.node.start(process_count())
        self.files = write_configs(self.tmp, self.ports, pids)
        p, files, tmp = self.ports, self.files, self.tmp
        self._start(
            sys.executable, "-m", "greenops_exporter", "serve", "--config", str(files["exporter"])
        )
        self._start(
            shutil.which("prometheus-alertmanager") or "prometheus-alertmanager",
            f"--config.file={files['alertmanager']}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{p['alertmanager']}",
            "--cluster.listen-address=",
        )
        self._start(
            shutil.which("prometheus") or "prometheus",
            f"--config.file={files['prometheus']}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{p['prometheus']}",
        )

    async def stop(self) -> None:
        self.node.stop()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._runner is not None:
            await self._runner.cleanup()


STAGED = (
    "these alerts are staged: the simulated fleet is scripted so that every alert's condition "
    "occurs, and the rules are the test profile's, whose `for:` durations are seconds; on a "
    "real fleet an alert fires only when its condition lasts as long as alerts/config.yaml "
    "says (minutes to hours)"
)


def banner(ports: dict[str, int]) -> list[str]:
    """What `make demo` prints first: where to look, and that what fires is staged."""
    return [
        f"exporter      http://127.0.0.1:{ports['exporter']}/  (/metrics)",
        f"Prometheus    http://127.0.0.1:{ports['prometheus']}/alerts",
        f"Alertmanager  http://127.0.0.1:{ports['alertmanager']}/",
        STAGED,
        "alerts arrive below within a minute or two; Ctrl-C stops everything",
    ]


def firing_line(name: str, alert: dict[str, Any]) -> str:
    severity = alert["labels"].get("severity")
    return f"  FIRING {name} ({severity}, staged): {alert['annotations']['summary']}"


async def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="greenops-demo-") as tmp:
        stack = Stack(Path(tmp))
        await stack.start()
        for line in banner(stack.ports):
            print(line)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        seen: set[str] = set()
        while not stop.is_set():
            for name in sorted(set(stack.peers.alerts) - seen):
                print(firing_line(name, stack.peers.alerts[name]))
                seen.add(name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
        await stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
