"""README's *Scale-out* series counts, counted on a live page: `serve --backend sim` with a
mixed fleet, every collector on, its /metrics split by each GPU's `uuid` label (the rest is
the exporter's own). The counts were stale (75 and 623 where the page gave 76 and 642)."""

from __future__ import annotations

import collections
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from documentation import documentation

ROOT = Path(__file__).resolve().parents[2]


def _process(pid: int, mig: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": pid, "memory_bytes": 4 << 30, "pod": f"pod-{pid}"}
    out |= {"namespace": "ns", "container": "c"}
    return out if mig is None else out | {"mig_instance": mig}


def _gpu(model: str, processes: list[dict[str, Any]], mig: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "model": model,
        "processes": processes,
        "mig": list(mig),
        "schedule": [{"phase": "compute", "seconds": 600}],
    }


FLEET = [  # (what it is, its spec); each GPU's series are told apart by its uuid
    ("h100, 1 process", _gpu("h100-sxm", [_process(101)])),
    ("h100, 2 processes", _gpu("h100-sxm", [_process(102), _process(103)])),
    ("h100, 3 processes", _gpu("h100-sxm", [_process(104), _process(105), _process(106)])),
    ("a100, 1 process", _gpu("a100-80gb", [_process(107)])),
    ("l4, 1 process", _gpu("l4", [_process(108)])),
    ("h100, 2 MIG", _gpu("h100-sxm", [_process(109, 0), _process(110, 1)], ("1g.10gb",) * 2)),
    ("h100, 3 MIG", _gpu("h100-sxm", [_process(111, 0), _process(112, 1)], ("1g.10gb",) * 3)),
]


def live_page(tmp_path: Path) -> str:
    scenario = tmp_path / "fleet.yaml"
    scenario.write_text(yaml.safe_dump({"seed": 1, "gpus": [spec for _, spec in FLEET]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenops_exporter",
            "serve",
            "--backend",
            "sim",
            "--scenario",
            str(scenario),
            "--listen-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text: str = r.read().decode()
                cycles = re.search(r"^greenops_collection_cycles_total (\S+)$", text, re.M)
                if cycles and float(cycles.group(1)) >= 3:  # rates and shares need two
                    return text
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the exporter served no page with three cycles")
    finally:
        proc.terminate()
        proc.wait(30)


def readme_counts() -> dict[str, str]:
    readme = documentation()
    table = readme.split("### Scale-out\n")[1].split("\n\n")[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {what.strip(): count.strip() for what, count in rows}


def test_the_readme_series_counts_are_the_live_page_s(tmp_path: Path) -> None:
    lines = [x for x in live_page(tmp_path).splitlines() if x and not x.startswith("#")]
    by_uuid = collections.Counter(
        m.group(1) if (m := re.search(r'uuid="([^"]+)"', x)) else None for x in lines
    )
    own = by_uuid.pop(None)
    process_metrics = sum(x.startswith("greenops_exporter_process_") for x in lines)
    assert len(by_uuid) == len(FLEET)
    uuids = sorted(by_uuid, key=lambda u: next(i for i, x in enumerate(lines) if u in x))
    got = {what: by_uuid[u] for (what, _), u in zip(FLEET, uuids, strict=True)}
    h100 = got["h100, 1 process"]
    second = got["h100, 2 processes"] - h100
    further = got["h100, 3 processes"] - got["h100, 2 processes"]
    mig = got["h100, 3 MIG"] - got["h100, 2 MIG"]
    assert got["a100, 1 process"] == got["l4, 1 process"]

    table = readme_counts()
    assert table["an H100 (GPM) with one process in one pod"] == str(h100)
    assert table["an A100 or L4 (no GPM) with one process"] == str(got["l4, 1 process"])
    assert table["each further process (and pod) on a GPU"].startswith(
        f"{further} ({second} for the second: "
    )
    assert table["each MIG instance"] == str(mig)
    assert table["per exporter, whatever the GPUs"].startswith(
        f"{own - process_metrics} (self-metrics, grid carbon, host) plus "
        f"`greenops_exporter_process_*` ({process_metrics} on Linux)"
    )
    assert table["a node with 8 H100s, one pod each"] == str(8 * h100 + own)
