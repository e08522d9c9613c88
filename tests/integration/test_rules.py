"""Alerting and recording rules: generated file current, promtool-valid, promtool-tested,
every alert with a runbook section and tests that fire and stay silent, every metric real."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from greenops_exporter.metrics import ALL_METRICS
from helpers import metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "greenops.rules.yml"
TESTS = ROOT / "alerts" / "tests" / "greenops.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not __import__("os").environ.get("CI"),
    reason="promtool (Debian package prometheus) is installed by make test",
)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_generated_rules_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "alerts" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL or "promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests() -> None:
    result = subprocess.run(
        [PROMTOOL or "promtool", "test", "rules", str(TESTS)],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    firing, silent = set(), set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert len(alerts) == 12
    assert alerts <= firing
    assert alerts <= silent


def test_alerts_follow_the_mixin_conventions() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:greenops_[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule
            continue
        name = rule["alert"]
        assert re.fullmatch(r"Greenops[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        annotations = rule["annotations"]
        assert annotations["summary"].endswith(".") and "{{" not in annotations["summary"]
        assert "{{" in annotations["description"]
        assert annotations["runbook_url"].endswith(f"#{name.lower()}")
        assert f"\n## {name}\n" in runbooks


def test_each_alert_has_a_summary_of_its_own() -> None:
    """issue 20: the slow and the fast carbon-budget burn had one summary, so a page and a
    ticket read alike; each summary now tells its alert apart."""
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rules() if "alert" in r}
    assert len(set(summaries.values())) == len(summaries), summaries
    fast = summaries["GreenopsCarbonBudgetBurnFast"]
    slow = summaries["GreenopsCarbonBudgetBurnSlow"]
    # 30 days / 14.4 = 2.1 days; 30 / 6 = 5 days (alerts/config.yaml, budgets.yaml)
    assert "fast: at over 14.4x its rate for 1h" in fast and "under 2 days" in fast
    assert "steadily: at over 6x its rate for 6h" in slow and "under 5 days" in slow


def test_rules_use_only_metrics_the_exporter_exports() -> None:
    exported = {m.name for m in ALL_METRICS} | {"up"}
    recorded = {r["record"] for r in rules() if "record" in r}
    checked = 0
    for rule in rules():
        for name in metric_names(rule["expr"]):
            assert name in exported or name in recorded, (name, rule)
            checked += 1
    assert checked > 30  # the expressions were really read
