"""Load benchmark: many concurrent scrapers against the largest sim fleet (8 H100s with 7 MIG
instances each and 100 processes). Prints latency percentiles and errors; asserts nothing.

    python bench/load.py [--scrapers 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_exporter import scenario, serve  # noqa: E402


async def scraper(url: str, until: float, latencies: list[float], errors: list[str]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(f"HTTP {response.status}")
                        continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - started)


async def run(url: str, scrapers: int, seconds: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(scraper(url, until, latencies, errors) for _ in range(scrapers)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(yaml.safe_dump(scenario("8gpu-mig")))
        proc, port = serve(["--backend", "sim", "--scenario", str(path)])
        try:
            time.sleep(1.5)
            latencies, errors = asyncio.run(
                run(f"http://127.0.0.1:{port}/metrics", args.scrapers, args.seconds)
            )
        finally:
            proc.terminate()
            proc.wait(10)
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(int(len(latencies) * q), len(latencies) - 1)] * 1e3 if latencies else 0.0
        )

    print(
        f"\nload: {args.scrapers} concurrent scrapers for {args.seconds:g} s, "
        "8 H100 x 7 MIG, 100 processes (Python client and server on one 2-core machine)"
    )
    print(
        f"{'scrapes':>8} {'per s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'errors':>7}"
    )
    print(
        f"{len(latencies):>8} {len(latencies) / args.seconds:>8.0f} {pct(0.5):>8.1f}"
        f" {pct(0.9):>8.1f} {pct(0.99):>8.1f} {pct(1.0):>8.1f} {len(errors):>7}"
    )
    if errors:
        print("errors:", sorted(set(errors)))


if __name__ == "__main__":
    main()
