"""The demo's host: RAPL counters that advance as a two-socket node draws, and real processes.

The powercap tree is in the kernel's layout (tests/powercap.py); the processes burn a little
CPU each, so that the sim's GPU processes, whose pids they lend, get host energy shares.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from powercap import INTEL_2S, FakePowercap  # noqa: E402

# what the simulated host draws, in watts, by RAPL zone
HOST_WATTS = {
    "intel-rapl:0": 182.0,
    "intel-rapl:0:0": 120.0,
    "intel-rapl:0:1": 31.0,
    "intel-rapl:0:2": 24.0,
    "intel-rapl:1": 156.0,
    "intel-rapl:1:0": 21.0,
    "intel-rapl:2": 420.0,
}
# a GPU process's host side: 2 ms of CPU every 100 ms
WORKLOAD = (
    "import time\n"
    "while True:\n"
    "    t = time.process_time()\n"
    "    while time.process_time() - t < 0.002:\n"
    "        pass\n"
    "    time.sleep(0.1)\n"
)


class Node:
    """Starts the counters and the processes; stop() ends both."""

    def __init__(self, powercap_root: Path) -> None:
        self.powercap = FakePowercap(powercap_root, INTEL_2S)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self, processes: int) -> list[int]:
        """Start drawing power and `processes` workloads; their pids."""
        self._task = asyncio.create_task(self._draw())
        self.processes = [
            subprocess.Popen([sys.executable, "-c", WORKLOAD]) for _ in range(processes)
        ]
        return [p.pid for p in self.processes]

    async def _draw(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for zone, watts in HOST_WATTS.items():
                self.powercap.advance(zone, watts * (now - last))
            last = now

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for process in self.processes:
            process.kill()
            process.wait()
