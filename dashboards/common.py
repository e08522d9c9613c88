"""Shared pieces of the greenops dashboards: the datasource input, template variables,
panel helpers that insist on a unit and a description, a simple grid layout, and the
post-processing that makes grafanalib's JSON valid against Grafana's own schema.

grafanalib (0.7.1) emits what it can of the current schema: schemaVersion, datasource
references as objects. It cannot leave out its legacy keys (`rows`, `span`,
`sharedCrosshair`, `hideControls`, `style`, a target's `query`/`step`…) nor its nulls, and
it writes a stat's `thresholds.steps` as "" and no `legend.showLegend`: `for_grafana`
rewrites those (tests/unit/test_dashboard_schema.py checks the result with `tsc --strict`
against @grafana/schema 13.2.3).
"""

from __future__ import annotations

import json
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    Dashboard,
    DataSourceInput,
    GridPos,
    Stat,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

SCHEMA_VERSION = 42  # @grafana/schema 13.2.3's defaultDashboard.schemaVersion
# every query, panel and variable reads the one data-source variable; the import's
# DS_PROMETHEUS input fills that variable's value
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GPU_SELECTOR = 'hostname=~"$hostname", gpu=~"$gpu"'
POD_SELECTOR = 'hostname=~"$hostname", gpu=~"$gpu", namespace=~"$namespace"'
HOST_POD_SELECTOR = 'hostname=~"$hostname", namespace=~"$namespace"'  # no gpu on host series


def _all_values(name: str, label: str, query: str) -> Template:
    """A multi-select variable that defaults to everything, so a fresh dashboard shows the fleet."""
    return Template(
        name=name,
        label=label,
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        query=query,
        allValue=".*",
        default="$__all",
    )


FILTERS = {  # the variables a board filters on: name -> (label, query)
    "hostname": ("Node", "label_values(greenops_gpu_info, hostname)"),
    "gpu": ("GPU", 'label_values(greenops_gpu_info{hostname=~"$hostname"}, gpu)'),
    "namespace": (
        "Namespace",
        'label_values(greenops_pod_energy_joules_total{hostname=~"$hostname"}, namespace)',
    ),
}


def templating(filters: tuple[str, ...]) -> Templating:
    """The data-source variable, then the filters the board's series can be filtered on
    (a variable no panel honours would show the fleet under a filter naming one node)."""
    variables = [
        Template(
            name="datasource",
            label="Data source",
            query="prometheus",
            type="datasource",
            default="${DS_PROMETHEUS}",
        ),
    ]
    variables += [_all_values(name, *FILTERS[name]) for name in filters]
    return Templating(list=variables)


def targets(*queries: tuple[str, str]) -> list[Target]:
    return [
        Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str, description: str, unit: str, *queries: tuple[str, str], stack: bool = False
) -> TimeSeries:
    return TimeSeries(
        title=title,
        description=description,
        unit=unit,
        dataSource=DATASOURCE,
        targets=targets(*queries),
        stacking={"mode": "normal", "group": "A"} if stack else {},
        fillOpacity=30 if stack else 0,
    )


def stat(title: str, description: str, unit: str, query: str, legend: str = "") -> Stat:
    return Stat(
        title=title,
        description=description,
        format=unit,
        dataSource=DATASOURCE,
        targets=targets((query, legend)),
        reduceCalc="lastNotNull",
    )


def layout(panels: list, width: int = 12, height: int = 8) -> list:
    """Place panels left to right, two to a row (stats four to a row)."""
    x = y = 0
    row_height = 0
    for panel in panels:
        w, h = (6, 4) if isinstance(panel, Stat) else (width, height)
        if x + w > 24:
            x, y = 0, y + row_height
            row_height = 0
        panel.gridPos = GridPos(h=h, w=w, x=x, y=y)
        x += w
        row_height = max(row_height, h)
    return panels


class SchemaDashboard(Dashboard):  # type: ignore[misc]
    """A grafanalib Dashboard whose JSON is Grafana's current schema (`for_grafana`)."""

    def to_json_data(self) -> dict[str, Any]:
        plain = json.loads(json.dumps(super().to_json_data(), cls=DashboardEncoder))
        return for_grafana(plain)


# keys grafanalib writes that the current schema has not (or no longer) got
_LEGACY_BOARD = ("rows", "sharedCrosshair", "hideControls", "style", "gnetId", "id")
_LEGACY_PANEL = ("editable", "error", "height", "minSpan", "span")
_LEGACY_TARGET = ("metric", "query", "target", "step", "intervalFactor")
_LEGACY_VARIABLE = ("auto", "auto_count", "auto_min", "tagValuesQuery", "tagsQuery", "useTags")
_BASE_STEP = {"color": "green", "value": None}  # the base threshold: its value is null
_STAT_OPTIONS = {  # the stat panel's options the schema requires and grafanalib omits
    "percentChangeColorMode": "standard",
    "showPercentChange": False,
    "wideLayout": True,
}


def _no_nulls(value: Any) -> Any:
    """Drop every key whose value is null: grafanalib writes null for "unset", which the
    schema allows almost nowhere (a threshold's base step, restored after this)."""
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


def for_grafana(board: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's dashboard JSON rewritten to Grafana's current schema."""
    board = _no_nulls(board)
    for key in _LEGACY_BOARD:
        board.pop(key, None)
    board.get("timepicker", {}).pop("time_options", None)  # gone from TimePickerConfig
    for variable in board["templating"]["list"]:
        for key in _LEGACY_VARIABLE:
            variable.pop(key, None)
        variable.get("current", {}).pop("tags", None)
    for panel in board["panels"]:
        for key in _LEGACY_PANEL:
            panel.pop(key, None)
        for target in panel.get("targets", []):
            for key in _LEGACY_TARGET:
                target.pop(key, None)
        defaults = panel["fieldConfig"]["defaults"]
        thresholds = defaults.setdefault("thresholds", {"mode": "absolute"})
        if not isinstance(thresholds.get("steps"), list) or not thresholds["steps"]:
            thresholds["steps"] = [dict(_BASE_STEP)]
        options = panel.setdefault("options", {})
        if panel["type"] == "timeseries":
            options["legend"].setdefault("showLegend", True)
        elif panel["type"] == "stat":
            options.update({k: v for k, v in _STAT_OPTIONS.items() if k not in options})
    return board


def dashboard(
    title: str,
    uid: str,
    description: str,
    panels: list,
    filters: tuple[str, ...] = ("hostname", "gpu", "namespace"),
) -> Dashboard:
    return SchemaDashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["greenops", "gpu"],
        schemaVersion=SCHEMA_VERSION,
        timezone="utc",
        refresh="30s",
        time=Time("now-6h", "now"),
        inputs=[
            DataSourceInput(
                name="DS_PROMETHEUS",
                label="Prometheus",
                pluginId="prometheus",
                pluginName="Prometheus",
            )
        ],
        templating=templating(filters),
        panels=layout(panels),
    ).auto_panel_ids()
