"""What `make demo` prints: where to look, and that the alerts it shows are staged (a
scripted fleet, the test profile's second-long `for:` durations), not a fleet's real state."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "demo"))
from stack import banner, firing_line  # noqa: E402


def test_the_demo_says_its_alerts_are_staged() -> None:
    """issue 20: a newcomer watched twelve alerts fire within a minute, critical ones among
    them, with nothing saying the fleet was scripted to trip them."""
    lines = banner({"exporter": 1, "prometheus": 2, "alertmanager": 3})
    assert lines[0] == "exporter      http://127.0.0.1:1/  (/metrics)"
    staged = [line for line in lines if line.startswith("these alerts are staged: ")]
    assert len(staged) == 1
    assert "test profile" in staged[0] and "alerts/config.yaml" in staged[0]
    assert lines.index(staged[0]) < len(lines) - 1  # before the alerts start to arrive
    alert = {"labels": {"severity": "critical"}, "annotations": {"summary": "A GPU is down."}}
    assert firing_line("GreenopsGPUDown", alert) == (
        "  FIRING GreenopsGPUDown (critical, staged): A GPU is down."
    )
