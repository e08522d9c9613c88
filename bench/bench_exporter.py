"""Benchmark: scrape latency, CPU per collection cycle, RSS and series count, by fleet size.

Prints figures; asserts nothing. Sizes:
  1gpu      one H100 under load
  8gpu      eight H100s in mixed phases, one process each
  8gpu-mig  eight H100s with seven 1g.10gb MIG instances each and 100 processes
With --backend nvml it measures the real GPUs instead (CPU per GPU per cycle included).
What the serving process costs as the OS counts it, beside nvitop-exporter, is `make
bench` (bench/serve_bench.py); this one times cycles in-process.

    python bench/bench_exporter.py [--sizes 1gpu,8gpu,8gpu-mig] [--scrapes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "exporter"))


from greenops_exporter.backends import choose_backend  # noqa: E402
from greenops_exporter.backends.sim import Scenario, SimBackend  # noqa: E402
from greenops_exporter.collect import Collector, CollectSettings  # noqa: E402
from greenops_exporter.metrics import Exposition  # noqa: E402


class Row(NamedTuple):
    size: str
    gpus: int
    cpu: float
    encode: float
    core_share: float
    p50: float
    p99: float
    spaced_p99: float
    fresh_p50: float
    fresh_p99: float
    fresh_n: int
    rss: int
    series: int
    all_series: int


PHASES = ["compute", "memory", "inference", "overhead", "io", "idle_context", "bursty", "idle"]


def scenario(size: str) -> dict[str, Any]:
    if size == "1gpu":
        return {
            "gpus": [
                {"processes": [{"pid": 100}], "schedule": [{"phase": "compute", "seconds": 60}]}
            ]
        }
    gpus = []
    pid = 1000
    for i in range(8):
        gpu: dict[str, Any] = {
            "model": "h100-sxm",
            "schedule": [{"phase": PHASES[i], "seconds": 60}],
        }
        if size == "8gpu-mig":
            gpu["mig"] = ["1g.10gb"] * 7
            count = 13 if i < 4 else 12  # 4 x 13 + 4 x 12 = 100 processes
            gpu["processes"] = [
                {
                    "pid": (pid := pid + 1),
                    "memory_bytes": 2 << 30,
                    "mig_instance": j % 7,
                    "command": f"worker-{j}",
                    "pod": f"pod-{i}-{j}",
                    "namespace": "bench",
                }
                for j in range(count)
            ]
            gpu["schedule"] = [{"phase": "inference", "seconds": 60}]
        else:
            gpu["processes"] = [{"pid": (pid := pid + 1), "memory_bytes": 8 << 30}]
        gpus.append(gpu)
    return {"seed": 1, "gpus": gpus}


def cpu_per_cycle(
    backend_kind: str, spec: dict[str, Any] | None, cycles: int
) -> tuple[float, float, int, float]:
    """CPU seconds (all threads) and wall seconds per collection cycle, device count, and
    the time to encode one snapshot (what the first scrape after a cycle pays)."""
    if backend_kind == "sim":
        assert spec is not None
        backend: Any = SimBackend(Scenario.model_validate(spec))
    else:
        backend, _ = choose_backend(backend_kind)
    collector = Collector(backend, CollectSettings(device_timeout_seconds=5.0))

    async def go() -> tuple[float, float, int, float]:
        await collector.collect_once()  # open + first read (probes) not counted
        await collector.collect_once()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(cycles):
            await collector.collect_once()
            if backend_kind == "nvml":
                await asyncio.sleep(0.05)  # GPM needs time between samples on real GPUs
        cpu = (time.process_time() - cpu0) / cycles
        wall = (time.perf_counter() - wall0) / cycles
        devices = len(collector.snapshot.devices)
        exposition = Exposition("bench-host")
        started = time.perf_counter()
        for _ in range(50):
            exposition.encode(collector.snapshot)
        encode = (time.perf_counter() - started) / 50
        await collector.close()
        return cpu, wall, devices, encode

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    env["PYTHONPATH"] = str(ROOT / "exporter")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenops_exporter",
            "serve",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("exporter did not become ready")


def percentile(values: list[float], q: float) -> float:
    """The q-th quantile by rank (the maximum where there are too few values for it)."""
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def scrape(conn: http.client.HTTPConnection) -> tuple[float, bytes]:
    started = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    return time.perf_counter() - started, body


def scrape_figures(port: int, scrapes: int) -> tuple[float, float, int, int]:
    """Back-to-back scrapes: p50, p99, series counts."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies = []
    body = b""
    for _ in range(scrapes):
        seconds, body = scrape(conn)
        latencies.append(seconds)
    conn.close()
    lines = [x for x in body.decode().splitlines() if x and not x.startswith("#")]
    own = [x for x in lines if not x.startswith("greenops_exporter_process_")]
    return percentile(latencies, 0.5), percentile(latencies, 0.99), len(own), len(lines)


CYCLES_LINE = re.compile(rb"^greenops_collection_cycles_total (\S+)$", re.M)


def spaced_figures(port: int, scrapes: int, pause: float) -> tuple[float, float, float, int]:
    """Scrapes `pause` apart against the 1 Hz collection: p99 of all of them, and p50 and
    p99 of those that were the first after a new cycle (their cycle count moved), which
    pay the encoding of that cycle's Snapshot."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    every, fresh = [], []
    last_cycle = b""
    for _ in range(scrapes):
        time.sleep(pause)
        seconds, body = scrape(conn)
        every.append(seconds)
        match = CYCLES_LINE.search(body)
        cycle = match.group(1) if match else b""
        if cycle != last_cycle:
            fresh.append(seconds)
            last_cycle = cycle
    conn.close()
    return percentile(every, 0.99), percentile(fresh, 0.5), percentile(fresh, 0.99), len(fresh)


def idle_cpu_share(pid: int, seconds: float) -> float:
    proc = psutil.Process(pid)
    t0 = proc.cpu_times()
    time.sleep(seconds)
    t1 = proc.cpu_times()
    return (t1.user + t1.system - t0.user - t0.system) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1gpu,8gpu,8gpu-mig")
    parser.add_argument("--backend", choices=["sim", "nvml"], default="sim")
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--spaced-scrapes", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()

    sizes = args.sizes.split(",") if args.backend == "sim" else ["nvml"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            spec = scenario(size) if args.backend == "sim" else None
            cpu, _wall, devices, encode = cpu_per_cycle(args.backend, spec, args.cycles)
            if spec is not None:
                path = Path(tmp) / f"{size}.yaml"
                path.write_text(yaml.safe_dump(spec))
                serve_args = ["--backend", "sim", "--scenario", str(path)]
            else:
                serve_args = ["--backend", "nvml"]
            proc, port = serve(serve_args)
            try:
                time.sleep(1.5)
                share = idle_cpu_share(proc.pid, args.idle_seconds)
                p50, p99, series, all_series = scrape_figures(port, args.scrapes)
                rss = psutil.Process(proc.pid).memory_info().rss
            finally:
                proc.terminate()
                proc.wait(10)
            # scrapes spaced out against the 1 Hz collection, landing at every phase of it
            proc, port = serve(serve_args)
            try:
                time.sleep(1.5)
                spaced = spaced_figures(port, args.spaced_scrapes, pause=0.27)
            finally:
                proc.terminate()
                proc.wait(10)
            rows.append(
                Row(
                    size,
                    devices,
                    cpu,
                    encode,
                    share,
                    p50,
                    p99,
                    *spaced,
                    rss,
                    series,
                    all_series,
                )
            )

    print(
        f"\ngreenops-exporter benchmark ({args.backend}; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; {args.scrapes} back-to-back scrapes, "
        f"{args.spaced_scrapes} spaced scrapes, {args.cycles} cycles)"
    )
    header = (
        f"{'size':<9} {'GPUs':>4} {'CPU ms/cycle':>12} {'CPU ms/GPU':>10} {'encode ms':>9} "
        f"{'core% 1Hz':>9} {'p50 ms':>7} {'p99 ms':>7} {'spaced p99':>10} "
        f"{'first p50':>9} {'first p99':>9} {'n':>3} "
        f"{'RSS MiB':>7} {'series':>6} {'+process':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.size:<9} {r.gpus:>4} {r.cpu * 1e3:>12.3f} {r.cpu * 1e3 / max(r.gpus, 1):>10.3f} "
            f"{r.encode * 1e3:>9.2f} {r.core_share * 100:>9.2f} {r.p50 * 1e3:>7.2f} "
            f"{r.p99 * 1e3:>7.2f} {r.spaced_p99 * 1e3:>10.2f} {r.fresh_p50 * 1e3:>9.2f} "
            f"{r.fresh_p99 * 1e3:>9.2f} {r.fresh_n:>3} "
            f"{r.rss / 2**20:>7.1f} {r.series:>6} "
            f"{r.all_series:>8}"
        )
    print(
        "\nCPU ms/cycle: process CPU (all threads) per collection cycle, measured in-process."
        "\nencode ms: rendering and encoding one Snapshot as Prometheus text, done on demand by"
        "\n  the first scrape of each cycle's Snapshot (in a worker thread), then cached."
        "\ncore% 1Hz: the serving exporter's CPU share, collecting at 1 Hz, not scraped."
        "\np50/p99: back-to-back scrapes (all but the first get the cached body); spaced p99:"
        "\n  one scrape every 270 ms against 1 Hz collection, landing at every phase of it;"
        "\n  first p50/p99: of those, the n that were the first after a new cycle (they pay"
        "\n  that cycle's encoding; the p99 is their maximum where n < 100)."
        "\nseries: exporter samples in one scrape; +process: with the process_* metrics."
    )


if __name__ == "__main__":
    main()
