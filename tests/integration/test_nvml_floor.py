"""bench/nvml_floor.py, the real-GPU script, runs end to end on the stand-in (so that it is
known to work before a GPU is lent to run it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_nvml_floor_runs_every_step_on_the_standin(tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    args = ["--standin", "--seconds", "4", "--warmup", "1", "--json", str(out)]
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "nvml_floor.py"), *args],
        check=True,
        capture_output=True,
        timeout=120,
    )
    figures = json.loads(out.read_text())
    assert figures["standin"] is True
    sleepers = figures["sleepers"]
    assert set(sleepers) == {"imported pynvml", "called nvmlInit()"}
    assert all(s["rss_mib"] > 10 and s["cpu_ms_s"] >= 0 for s in sleepers.values())
    calls = figures["call_set"]
    # one GPU's set costs at least what the table charges for it (0.16 ms without anchor)
    assert calls["gpus"] == 1 and calls["tight_ms"] >= 0.16 and calls["paced_ms"] > 0
    exporters = {row["exporter"]: row for row in figures["exporters"]}
    assert "greenops" in exporters
    for row in exporters.values():
        assert row["series"] > 50 and row["rss_mib"] > 20 and row["scrape_p50_ms"] > 0
