"""Helpers shared by the tests: run the CLI, run a sim fleet for some cycles, the recorded
phases and the class each must fall in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from fakenvml import FIXTURES
from greenops_exporter.backends.sim import Scenario, SimBackend
from greenops_exporter.collect import Collector, CollectSettings, Snapshot

# replay the H100 recording ten times faster than it was recorded
REPLAY_ARGS = (
    "--backend",
    "replay",
    "--replay",
    str(FIXTURES / "trace_a.jsonl"),
    "--replay-speed",
    "10",
)

PHASES: list[dict[str, Any]] = json.loads((FIXTURES / "phases_a.json").read_text())["phases"]

# the class each recorded phase must fall in (batch-256 inference is mixed: not judged)
EXPECTED_CLASS = {
    "idle_no_context": "idle",
    "idle_context": "idle",
    "idle_after_compute": "idle",
    "idle_end": "idle",
    "compute_matmul_bf16": "compute",
    "memory_copy_2gib": "memory",
    "pcie_h2d_1gib": "io",
    "overhead_tiny_kernels": "overhead",
    "inference_mlp_batch1": "overhead",
}


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenops_exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_sim(
    spec: dict[str, Any] | Scenario, cycles: int, carbon: Any = None, **settings: Any
) -> Snapshot:
    """A sim fleet collected `cycles` times, one second apart on an injected clock."""
    now = [100.0]
    scenario = spec if isinstance(spec, Scenario) else Scenario.model_validate(spec)
    backend = SimBackend(scenario, clock=lambda: now[0])
    collector = Collector(
        backend, CollectSettings(**settings), monotonic=lambda: now[0], carbon=carbon
    )

    async def go() -> Snapshot:
        snap = collector.snapshot
        for _ in range(cycles):
            now[0] += 1.0
            snap = await collector.collect_once()
        await collector.close()
        return snap

    return asyncio.run(go())


PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "increase",
    "topk",
    "absent",
    "vector",
    "and",
    "or",
    "unless",
}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names a PromQL expression reads."""
    import re

    bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    bare = re.sub(r"\b(by|on|without|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors
    bare = re.sub(r"\boffset\s+\w+", "", bare)
    return {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if t not in PROMQL_WORDS}
