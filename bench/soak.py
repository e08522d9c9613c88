"""Soak benchmark: a million collection cycles against the sim backend at full speed (the
clock is injected: one simulated second per cycle), with processes and pods churning
through 100,000 identities. Prints RSS and series count along the way: both must stay
flat because ended identities expire. Asserts nothing.

    python bench/soak.py [--cycles 1000000] [--identities 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "exporter"))

from greenops_exporter.backends.sim import Scenario, SimBackend  # noqa: E402
from greenops_exporter.collect import Collector, CollectSettings  # noqa: E402
from greenops_exporter.metrics import Exposition  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=10)
    args = parser.parse_args()
    processes = 4
    scenario = Scenario.model_validate(
        {
            "gpus": [
                {
                    "model": "h100-sxm",
                    "processes": [
                        {"pid": 1000 + i, "pod": f"job{i}", "namespace": "soak", "container": "c"}
                        for i in range(processes)
                    ],
                    "schedule": [{"phase": "inference", "seconds": 3600}],
                    # a new identity per process every 10 simulated seconds
                    "churn_identities": args.identities // processes,
                    "churn_every_seconds": 10,
                }
            ]
        }
    )
    now = [0.0]
    backend = SimBackend(scenario, clock=lambda: now[0])
    # identities unseen for 60 simulated seconds expire
    collector = Collector(
        backend, CollectSettings(identity_expire_seconds=60.0), monotonic=lambda: now[0]
    )
    exposition = Exposition("soak")
    me = psutil.Process()
    every = max(args.cycles // args.points, 1)
    print(
        f"\nsoak: {args.cycles} cycles, {processes} processes churning through "
        f"{args.identities} identities (one new identity per process every 10 cycles)"
    )
    print(f"{'cycle':>9} {'identities seen':>15} {'RSS MiB':>8} {'series':>7} {'cycles/s':>9}")

    async def go() -> None:
        started = time.perf_counter()
        for cycle in range(1, args.cycles + 1):
            now[0] += 1.0
            await collector.collect_once()
            if cycle % every == 0 or cycle == 1:
                series = sum(
                    1
                    for line in exposition.encode(collector.snapshot).decode().splitlines()
                    if line and not line.startswith("#")
                )
                seen = min(cycle // 10 * processes + processes, args.identities)
                rate = cycle / (time.perf_counter() - started)
                rss = me.memory_info().rss / 2**20
                print(f"{cycle:>9} {seen:>15} {rss:>8.1f} {series:>7} {rate:>9.0f}", flush=True)
        await collector.close()

    asyncio.run(go())


if __name__ == "__main__":
    main()
