"""The five dashboards: generated JSON current, every panel with a unit and a description,
stable uids, the template variables SREs expect, and only metrics that exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from greenops_exporter.metrics import ALL_METRICS
from helpers import metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
UIDS = {
    "fleet-overview.json": "greenops-fleet",
    "gpu-detail.json": "greenops-gpu",
    "efficiency-waste.json": "greenops-waste",
    "inference-efficiency.json": "greenops-inference",
    "carbon-cost.json": "greenops-carbon",
}
RECORDED = {
    r["record"]
    for g in yaml.safe_load((ROOT / "alerts" / "greenops.rules.yml").read_text())["groups"]
    for r in g["rules"]
    if "record" in r
}
EXPORTED = {m.name for m in ALL_METRICS}
PROMQL_WORDS = {
    "sum",
    "by",
    "on",
    "rate",
    "increase",
    "topk",
    "group_left",
    "max",
    "and",
    "or",
    "offset",
    "label_values",
}


def test_generated_json_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_five_dashboards_with_stable_uids() -> None:
    assert {p.name for p in DASHBOARDS} == set(UIDS)
    for path in DASHBOARDS:
        assert json.loads(path.read_text())["uid"] == UIDS[path.name]


def panels(path: Path) -> list[dict]:
    return json.loads(path.read_text())["panels"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_panel_has_a_unit_description_and_real_queries(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["description"]
    names = [v["name"] for v in board["templating"]["list"]]
    # the inference series carry no node, GPU or namespace label: no filter that does nothing
    filters = [] if path.name == "inference-efficiency.json" else ["hostname", "gpu", "namespace"]
    assert names == ["datasource", *filters]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    assert len(board["panels"]) >= 7
    for panel in board["panels"]:
        assert panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] not in ("", None), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            for name in names:
                assert name in EXPORTED or name in RECORDED, (path.name, panel["title"], name)
