"""Shared pieces of the greenops dashboards: the datasource input, template variables,
panel helpers that insist on a unit and a description, and a simple grid layout."""

from __future__ import annotations

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

DATASOURCE = "${datasource}"
GPU_SELECTOR = 'hostname=~"$hostname", gpu=~"$gpu"'
POD_SELECTOR = 'hostname=~"$hostname", namespace=~"$namespace"'


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


def templating(namespace: bool = False) -> Templating:
    variables = [
        Template(
            name="datasource",
            label="Data source",
            query="prometheus",
            type="datasource",
            default="Prometheus",
        ),
        _all_values("hostname", "Node", "label_values(greenops_gpu_info, hostname)"),
        _all_values("gpu", "GPU", 'label_values(greenops_gpu_info{hostname=~"$hostname"}, gpu)'),
    ]
    if namespace:
        variables.append(
            _all_values(
                "namespace",
                "Namespace",
                'label_values(greenops_pod_energy_joules_total{hostname=~"$hostname"}, namespace)',
            )
        )
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


def dashboard(
    title: str, uid: str, description: str, panels: list, namespace: bool = True
) -> Dashboard:
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["greenops", "gpu"],
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
        templating=templating(namespace),
        panels=layout(panels),
    ).auto_panel_ids()
