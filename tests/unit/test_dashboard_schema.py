"""Every generated dashboard against Grafana's own schema: `tsc --strict` on a TypeScript
file per dashboard that types it as @grafana/schema 13.2.3's `Dashboard` and each panel's
options and custom field config as its panel plugin's own types (`make grafana-schema`
installs both from the npm registry into .grafana-schema/). Beyond what the types can say:
the current schemaVersion, one data-source variable that the import's DS_PROMETHEUS fills
and every reference binds to, no legacy keys, and every panel filtered by every variable."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from greenops_exporter.metrics import ALL_METRICS
from helpers import metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
SCHEMA = ROOT / ".grafana-schema" / "node_modules"
TSC = SCHEMA / "typescript" / "bin" / "tsc"
needs_schema = pytest.mark.skipif(
    not (SCHEMA / "@grafana" / "schema").is_dir() or not TSC.exists(),
    reason="@grafana/schema not installed: make grafana-schema",
)
PANELCFG = "@grafana/schema/dist/esm/raw/composable/{0}/panelcfg/x/{1}PanelCfg_types.gen"
PLUGINS = {"timeseries": "TimeSeries", "stat": "Stat"}  # the panel types the boards use
LEGACY = {"rows", "span", "sharedCrosshair", "hideControls", "nullPointMode", "renderer"}

# JSON carries an enum's value ("value"), which TypeScript's string enums do not accept
# from a literal: Json<T> is T with each string enum as the union of its values. Nothing
# else is loosened: objects keep their keys (excess ones are errors), numbers and nulls.
PRELUDE = """\
import type {{ Dashboard }} from "@grafana/schema";
{imports}
type Json<T> = T extends string ? `${{T}}` : T extends Array<infer U> ? Array<Json<U>>
  : T extends object ? {{ [K in keyof T]: Json<T[K]> }} : T;
// the import format's inputs (Grafana's "export for sharing externally"); not in Dashboard
interface Input {{ name: string; label: string; description?: string; type: "datasource";
  pluginId: string; pluginName: string }}
"""


def typescript(board: dict[str, Any]) -> str:
    """The dashboard as TypeScript: the whole board typed as Dashboard, each panel's options
    and fieldConfig.defaults.custom typed as its plugin's Options and FieldConfig."""
    board = dict(board)
    inputs = board.pop("__inputs", [])
    board.pop("__requires", None)
    imports = [
        f'import type * as {name} from "{PANELCFG.format(plugin, name)}";'
        for plugin, name in PLUGINS.items()
    ]
    lines = [PRELUDE.format(imports="\n".join(imports))]
    lines.append(f"export const inputs: Array<Input> = {json.dumps(inputs, indent=2)};")
    lines.append(f"export const dashboard: Json<Dashboard> = {json.dumps(board, indent=2)};")
    for i, panel in enumerate(board.get("panels", [])):
        name = PLUGINS.get(panel.get("type", ""))
        if name is None:
            continue
        options = json.dumps(panel.get("options", {}), indent=2)
        custom = json.dumps(panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}))
        lines.append(f"export const options{i}: Json<{name}.Options> = {options};")
        if name == "TimeSeries":
            lines.append(f"export const custom{i}: Json<{name}.FieldConfig> = {custom};")
    return "\n".join(lines) + "\n"


def tsc_errors(boards: dict[str, dict[str, Any]], where: Path) -> list[str]:
    """`tsc --strict --noEmit` over one .ts file per board; its error lines."""
    (where / "node_modules").symlink_to(SCHEMA, target_is_directory=True)
    for name, board in boards.items():
        (where / f"{name}.ts").write_text(typescript(board))
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "skipLibCheck": True,  # the package's own .d.ts are Grafana's business
        },
        "include": ["*.ts"],
    }
    (where / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        ["node", str(TSC), "-p", str(where), "--pretty", "false"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error TS" in line]
    assert result.returncode == (2 if errors else 0), result.stdout + result.stderr
    return errors


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@needs_schema
def test_every_dashboard_passes_tsc_strict_against_grafanas_schema(tmp_path: Path) -> None:
    boards = {p.stem: load(p) for p in DASHBOARDS}
    assert len(boards) == 5
    errors = tsc_errors(boards, tmp_path)
    assert errors == []


@needs_schema
def test_the_check_catches_what_the_schema_forbids(tmp_path: Path) -> None:
    """The check can fail: the defects found in the first generated boards, planted back."""
    board = load(ROOT / "dashboards" / "fleet-overview.json")
    stat = next(p for p in board["panels"] if p["type"] == "stat")
    series = next(p for p in board["panels"] if p["type"] == "timeseries")
    stat["fieldConfig"]["defaults"]["thresholds"]["steps"] = ""
    series["datasource"] = "${datasource}"
    del series["options"]["legend"]["showLegend"]
    stat["options"]["colorMode"] = "rainbow"
    board["panels"][-1]["span"] = 12  # a panel with no other fault: one error each
    errors = tsc_errors({"planted": board}, tmp_path)
    text = "\n".join(errors)
    assert len(errors) == 5, text
    assert "Type 'string' is not assignable to type '{ color: string;" in text  # steps ""
    assert "Type 'string' has no properties in common with type '{ type?" in text  # a string ref
    assert "Property 'showLegend' is missing" in text and """Type '"rainbow"'""" in text
    assert """'"span"' does not exist""" in text


def walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) in a JSON document."""
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += walk(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_current_schema_one_datasource_variable_no_legacy_keys(path: Path) -> None:
    board = load(path)
    assert board["schemaVersion"] == 42  # @grafana/schema 13.2.3's defaultDashboard
    (ds_input,) = board["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS" and ds_input["type"] == "datasource"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    # the import replaces ${DS_PROMETHEUS} with the data source chosen: the variable's
    # current value is that input, so choosing one on import binds every panel to it
    current = datasource["current"]
    assert (current["text"], current["value"]) == ("${DS_PROMETHEUS}", "${DS_PROMETHEUS}")
    bound = {"type": "prometheus", "uid": "${datasource}"}
    refs = [(p, v) for p, v in walk(board) if p.endswith(".datasource")]
    assert len(refs) >= 2 * len(board["panels"])  # each panel and each of its queries
    for where, ref in refs:
        if where == ".templating.list[0].datasource":
            continue  # the data-source variable itself has none
        assert ref == bound, where
    for where, value in walk(board):
        if value is None:  # the schema allows null almost nowhere: a base threshold's value
            assert re.search(r"\.thresholds\.steps\[0\]\.value$", where), where
        key = where.rsplit(".", 1)[-1]
        assert key not in LEGACY, where


def carried_labels() -> dict[str, set[str]]:
    """Each series' labels that a variable could filter: an exported metric's own, and a
    recorded series' sources' (a rule that sums a label away is no reason to ignore the
    variable: the panel reads the source instead), the labels all its sources carry (a
    node's GPU, CPU and DRAM together have no one gpu), plus those the rule sets."""
    labels = {m.name: set(m.label_names("node")) for m in ALL_METRICS}
    rules = yaml.safe_load((ROOT / "alerts" / "greenops.rules.yml").read_text())["groups"]
    recorded: dict[str, set[str]] = {}
    for group in rules:
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            sources = [labels[m] for m in metric_names(rule["expr"]) if m in labels]
            shared = set.intersection(*sources) if sources else set()
            shared |= set(rule.get("labels", {}))
            name = rule["record"]  # several rules may record one series (one per part)
            recorded[name] = recorded[name] & shared if name in recorded else shared
    return labels | recorded


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_panel_filters_on_every_variable_of_its_board(path: Path) -> None:
    """A variable that some panel ignores shows the fleet under a filter that says one node:
    each query of each panel filters on each query variable (hostname, gpu, namespace)
    whenever a series it reads carries that label (or its rule's sources do)."""
    board = load(path)
    variables = [v["name"] for v in board["templating"]["list"] if v["type"] == "query"]
    carried = carried_labels()
    checked = 0
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            names = metric_names(expr)
            assert names <= set(carried), (panel["title"], names - set(carried))
            for name in variables:
                if any(name in carried[m] for m in names):
                    assert f'{name}=~"${name}"' in expr, (panel["title"], name, expr)
                    checked += 1
    if variables:
        assert checked >= len(board["panels"])  # every panel filters on something
    else:  # no variable only where none could filter: no series carries the labels
        labels = {"hostname", "gpu", "namespace"}
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert not any(labels & carried[m] for m in metric_names(target["expr"]))


def test_a_rate_of_grams_is_shown_in_grams_per_second() -> None:
    """A per-second rate of a grams counter shown with the unit grams read "5.20 mg" for
    5.2 mg/s ("Carbon by scope"): such a panel's unit is g/s (SI-scaled: mg/s, kg/s)."""
    shown = 0
    for path in DASHBOARDS:
        for panel in load(path)["panels"]:
            unit = panel["fieldConfig"]["defaults"]["unit"]
            grams = [t["expr"] for t in panel["targets"] if "_grams" in t["expr"]]
            per_second = bool(grams) and all(
                ("rate(" in e or ":rate" in e) and "* 3600" not in e and " / " not in e
                for e in grams
            )
            if per_second:
                assert unit == "si:g/s", (path.name, panel["title"], unit)
                shown += 1
            elif unit == "si:g/s":
                raise AssertionError((path.name, panel["title"], "g/s on no rate"))
    assert shown >= 1  # fleet-overview's "Carbon by scope"
