"""Overhead on a real GPU: greenops-exporter (nvml backend, 1 s collection) beside
nvitop-exporter when it is installed, on the same machine and load. Prints CPU share of a
core, RSS, median scrape latency and series count for each; asserts nothing.

    python bench/overhead.py [--seconds 60] [--load] [--backend nvml]

`--load` runs a bf16 matmul loop on GPU 0 with torch meanwhile (where torch and a GPU are
there). With `--backend sim` it runs anywhere, to check the script itself.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_exporter import free_port  # noqa: E402

LOAD = """
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + {seconds}
while time.time() < end:
    (a @ a).sum().item()
"""


def wait_ready(port: int, path: str = "/metrics") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answers on port {port}")


def measure(
    name: str, cmd: list[str], port: int, seconds: float
) -> tuple[str, float, float, float, int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        time.sleep(3)
        ps = psutil.Process(proc.pid)
        family = [ps, *ps.children(recursive=True)]
        before = sum(p.cpu_times().user + p.cpu_times().system for p in family)
        latencies, body = [], b""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # one scrape a second, as Prometheus would at most
            started = time.perf_counter()
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            latencies.append(time.perf_counter() - started)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
        after = sum(p.cpu_times().user + p.cpu_times().system for p in family)
        rss = sum(p.memory_info().rss for p in family)
    finally:
        proc.terminate()
        proc.wait(10)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return name, (after - before) / seconds, rss / 2**20, statistics.median(latencies) * 1e3, series


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--backend", default="nvml")
    parser.add_argument("--load", action="store_true")
    args = parser.parse_args()
    load = None
    if args.load:
        load = subprocess.Popen([sys.executable, "-c", LOAD.format(seconds=args.seconds * 3 + 60)])
        time.sleep(5)
    rows = []
    try:
        port = free_port()
        rows.append(
            measure(
                "greenops-exporter",
                [
                    sys.executable,
                    "-m",
                    "greenops_exporter",
                    "serve",
                    "--backend",
                    args.backend,
                    "--listen-address",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "warning",
                ],
                port,
                args.seconds,
            )
        )
        nvitop = shutil.which("nvitop-exporter")
        if nvitop:
            port = free_port()
            rows.append(
                measure(
                    "nvitop-exporter",
                    [
                        nvitop,
                        "--bind-address",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--interval",
                        "1.0",
                    ],
                    port,
                    args.seconds,
                )
            )
    finally:
        if load is not None:
            load.terminate()
    print(
        f"\noverhead over {args.seconds:g} s, scraped once a second"
        f"{' under a bf16 matmul load' if args.load else ''}:"
    )
    print(f"{'exporter':<20} {'core %':>7} {'RSS MiB':>8} {'scrape p50 ms':>14} {'series':>7}")
    for name, share, rss, p50, series in rows:
        print(f"{name:<20} {share * 100:>7.2f} {rss:>8.1f} {p50:>14.2f} {series:>7}")
    if not shutil.which("nvitop-exporter"):
        print(
            "(nvitop-exporter is not installed here: pip install nvitop-exporter==1.7.2 to compare)"
        )


if __name__ == "__main__":
    main()
