"""Carbon and cost: the grid, operational against embodied carbon, budgets, and money."""

from common import GPU_SELECTOR as S
from common import HOST_POD_SELECTOR as HP
from common import POD_SELECTOR as P
from common import dashboard, timeseries

dashboard = dashboard(
    "greenops / Carbon and cost",
    "greenops-carbon",
    "Grid intensity and its forecast, operational vs embodied carbon, budget burn, energy "
    "and rental cost, and the cost of waste.",
    [
        timeseries(
            "Grid intensity",
            "The intensity in force and where it came from.",
            "short",
            ("greenops_grid_carbon_intensity_grams_per_kwh", "{{zone}} ({{source}})"),
            ("greenops_grid_carbon_intensity_forecast_min_grams_per_kwh", "{{zone}} forecast min"),
            ("greenops_greenest_window_mean_grams_per_kwh", "{{zone}} greenest window"),
        ),
        timeseries(
            "Carbon per hour by scope",
            "Operational and embodied grams CO2e per hour.",
            "massg",
            (f"sum by (scope) (increase(greenops_gpu_carbon_grams_total{{{S}}}[1h]))", "{{scope}}"),
            stack=True,
        ),
        timeseries(
            "Carbon per hour: GPU, CPU, DRAM",
            "Each node's operational carbon split into its GPUs, CPU packages and DRAM "
            "(grams CO2e per hour; recording rule).",
            "massg",
            (
                'hostname_part:greenops_node_carbon_grams:rate5m{hostname=~"$hostname"} * 3600',
                "{{hostname}} {{part}}",
            ),
            stack=True,
        ),
        timeseries(
            "Carbon per hour by namespace",
            "Grams CO2e per hour of each namespace's pods.",
            "massg",
            (
                f"sum by (namespace) (increase(greenops_pod_carbon_grams_total{{{P}}}[1h]))",
                "{{namespace}}",
            ),
            stack=True,
        ),
        timeseries(
            "Budget burn rate",
            "Carbon rate over the budget's rate (1 = on budget; the alerts fire at 14.4 and 6): "
            "the selected namespaces' pods, GPU and host carbon, on the selected nodes.",
            "short",
            (
                f"(sum by (namespace) (rate(greenops_pod_carbon_grams_total{{{P}}}[1h]))"
                f" + (sum by (namespace) (rate(greenops_host_pod_carbon_grams_total{{{HP}}}[1h]))"
                f" or sum by (namespace) (rate(greenops_pod_carbon_grams_total{{{P}}}[1h])) * 0))"
                " / on (namespace)"
                ' namespace:greenops_carbon_budget_grams:per_second{namespace=~"$namespace"}',
                "{{namespace}}",
            ),
        ),
        timeseries(
            "Cost per hour",
            "Energy and rental cost per hour.",
            "short",
            (
                f"sum by (kind, currency) (rate(greenops_gpu_cost_total{{{S}}}[5m])) * 3600",
                "{{kind}} ({{currency}})",
            ),
            stack=True,
        ),
        timeseries(
            "Cost of waste per hour",
            "Energy and rental cost of idle and overhead time.",
            "short",
            (
                f"sum by (class, currency) (rate(greenops_gpu_waste_cost_total{{{S}}}[5m])) * 3600",
                "{{class}} ({{currency}})",
            ),
            stack=True,
        ),
        timeseries(
            "Cost per hour by pod",
            "Each pod's share of energy and rental cost.",
            "short",
            (
                "sum by (namespace, pod, currency)"
                f" (rate(greenops_pod_cost_total{{{P}}}[5m])) * 3600",
                "{{namespace}}/{{pod}}",
            ),
        ),
        timeseries(
            "Cost per hour by holder",
            "The GPUs' cost by who held them: pods, processes outside pods, nobody (unheld).",
            "short",
            (
                "sum by (holder, currency)"
                f" (rate(greenops_gpu_holder_cost_total{{{S}}}[5m])) * 3600",
                "{{holder}} ({{currency}})",
            ),
            stack=True,
        ),
        timeseries(
            "GPUs held by namespace",
            "GPU-seconds held per second: how many GPUs each namespace's pods held.",
            "short",
            (
                f"sum by (namespace) (rate(greenops_pod_gpu_seconds_total{{{P}}}[5m]))",
                "{{namespace}}",
            ),
            stack=True,
        ),
    ],
)
