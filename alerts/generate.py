"""Generate greenops.rules.yml (recording rules and alerts) from config.yaml and budgets.yaml.

Monitoring-mixin style: one config of selectors and thresholds, recording rules named
`level:metric:operations` (numerator and denominator summed before dividing), CamelCase
alerts with a shared prefix, `severity`, a fixed one-sentence `summary`, a templated
`description` and a `runbook_url` whose anchor is the lowercased alert name.

    python alerts/generate.py            # writes alerts/greenops.rules.yml
    python alerts/generate.py --check    # exits 1 when the committed file is stale
    python alerts/generate.py --profile test --budgets B --out F
                                         # the same expressions with second-long `for:`,
                                         # windows and offsets, for the live end-to-end test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "greenops.rules.yml"
# the same rules as a Prometheus Operator object, for the kustomize overlay
OPERATOR_OUT = (
    HERE.parent
    / "deploy"
    / "kustomize"
    / "overlays"
    / "prometheus-operator"
    / "prometheusrule.yaml"
)
THROTTLE_REASONS = "hw_slowdown|hw_thermal_slowdown|sw_thermal_slowdown|hw_power_brake_slowdown"
GPU = "instance, gpu, uuid"


def recording_rules(budgets: dict[str, Any]) -> list[dict[str, Any]]:
    def rule(record: str, expr: str, **labels: str) -> dict[str, Any]:
        out: dict[str, Any] = {"record": record, "expr": expr}
        if labels:
            out["labels"] = labels
        return out

    period = budgets["budget_period_days"] * 86400
    rules = [
        rule("job:greenops_gpu_power_watts:sum", "sum(greenops_gpu_power_watts)"),
        rule(
            "instance:greenops_gpu_power_watts:sum", "sum by (instance) (greenops_gpu_power_watts)"
        ),
        rule(
            "job:greenops_gpu_energy_joules:rate5m",
            "sum(rate(greenops_gpu_energy_joules_total[5m]))",
        ),
        rule(
            "class:greenops_gpu_bottleneck_energy_joules:rate5m",
            "sum by (class) (rate(greenops_gpu_bottleneck_energy_joules_total[5m]))",
        ),
        rule("class:greenops_gpu_bottleneck:count", "sum by (class) (greenops_gpu_bottleneck)"),
        rule(
            "holder:greenops_gpu_idle_energy_joules:rate5m",
            "sum by (holder) (rate(greenops_gpu_idle_energy_joules_total[5m]))",
        ),
        rule(
            "job:greenops_gpu_stranded_memory_bytes:sum", "sum(greenops_gpu_stranded_memory_bytes)"
        ),
        rule(
            f"{GPU.replace(', ', '_')}:greenops_process_gpu_memory_bytes:sum",
            f"sum by ({GPU}) (greenops_process_gpu_memory_bytes)",
        ),
        rule(
            "scope:greenops_gpu_carbon_grams:rate5m",
            "sum by (scope) (rate(greenops_gpu_carbon_grams_total[5m]))",
        ),
        rule(
            "kind:greenops_gpu_cost:rate5m",
            "sum by (kind, currency) (rate(greenops_gpu_cost_total[5m]))",
        ),
        rule(
            "class:greenops_gpu_waste_cost:rate5m",
            "sum by (class, currency) (rate(greenops_gpu_waste_cost_total[5m]))",
        ),
        rule(
            "holder:greenops_gpu_holder_cost:rate5m",
            "sum by (holder, currency) (rate(greenops_gpu_holder_cost_total[5m]))",
        ),
        rule(
            "namespace:greenops_pod_gpu_seconds:rate5m",
            "sum by (namespace) (rate(greenops_pod_gpu_seconds_total[5m]))",
        ),
        rule(
            "namespace:greenops_pod_energy_joules:rate5m",
            "sum by (namespace) (rate(greenops_pod_energy_joules_total[5m]))",
        ),
        rule(
            "model:greenops_inference_joules_per_request:ratio_rate1h",
            "sum by (source, model) (rate(greenops_inference_energy_joules_total[1h]))"
            " / sum by (source, model) (rate(greenops_inference_requests_total[1h]))",
        ),
        rule(
            "model:greenops_inference_sci_grams_per_request:ratio_rate1h",
            "sum by (source, model) (rate(greenops_inference_carbon_grams_total[1h]))"
            " / sum by (source, model) (rate(greenops_inference_requests_total[1h]))",
        ),
    ]
    rules += node_energy_rules()
    for window in ("5m", "30m", "1h", "6h"):
        rules.append(
            rule(
                f"namespace:greenops_pod_carbon_grams:rate{window}",
                # the pods' GPU carbon plus their processes' host CPU and DRAM share where
                # the exporter measures host energy (added as 0 where it does not)
                with_host(
                    f"sum by (namespace) (rate(greenops_pod_carbon_grams_total[{window}]))",
                    f"sum by (namespace) (rate(greenops_host_pod_carbon_grams_total[{window}]))",
                ),
            )
        )
    for namespace, grams in sorted(budgets["namespaces"].items()):
        rules.append(
            rule(
                "namespace:greenops_carbon_budget_grams:per_second",
                f"vector({grams / period:.10g})",
                namespace=namespace,
            )
        )
    return rules


def with_host(gpu: str, host: str) -> str:
    """GPU plus host where host series exist, the GPU alone where they do not (a plain `+`
    would drop every namespace without host series)."""
    return f"{gpu} + ({host} or {gpu} * 0)"


def node_energy_rules() -> list[dict[str, Any]]:
    """Each node's energy and carbon split into GPU, CPU (RAPL package) and DRAM: one record
    name, a `part` label. core, uncore and psys are left out: they overlap package."""
    rules = [
        {
            "record": "hostname_part:greenops_node_energy_joules:rate5m",
            "expr": "sum by (hostname) (rate(greenops_gpu_energy_joules_total[5m]))",
            "labels": {"part": "gpu"},
        },
        {
            "record": "hostname_part:greenops_node_carbon_grams:rate5m",
            # operational only: the host parts have no embodied figure
            "expr": "sum by (hostname) "
            '(rate(greenops_gpu_carbon_grams_total{scope="operational"}[5m]))',
            "labels": {"part": "gpu"},
        },
    ]
    for part, zone in (("cpu", "package"), ("dram", "dram")):
        rules += [
            {
                "record": "hostname_part:greenops_node_energy_joules:rate5m",
                "expr": f"sum by (hostname) "
                f'(rate(greenops_host_energy_joules_total{{zone="{zone}"}}[5m]))',
                "labels": {"part": part},
            },
            {
                "record": "hostname_part:greenops_node_carbon_grams:rate5m",
                "expr": f"sum by (hostname) "
                f'(rate(greenops_host_carbon_grams_total{{zone="{zone}"}}[5m]))',
                "labels": {"part": part},
            },
        ]
    rules.append(
        {
            "record": "namespace:greenops_pod_host_energy_joules:rate5m",
            "expr": "sum by (namespace) (rate(greenops_host_pod_energy_joules_total[5m]))",
        }
    )
    return rules


def alerts(config: dict[str, Any], period_days: float = 30) -> list[dict[str, Any]]:
    a = config["alerts"]
    runbook = config["runbook_base"]
    selector = config["selector"]

    def alert(name: str, expr: str, summary: str, description: str) -> dict[str, Any]:
        spec = a[name]
        return {
            "alert": name,
            "expr": expr,
            "for": spec["for"],
            "labels": {"severity": spec["severity"]},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"{runbook}#{name.lower()}",
            },
        }

    def burn(name: str, how: str) -> dict[str, Any]:
        """The fast and the slow burn say which they are, and what the rate means: a
        critical page at 2 a.m. and a ticket for the morning must not read alike."""
        s = a[name]
        long_, short, factor = s["long"], s["short"], s["factor"]
        return alert(
            name,
            f"(namespace:greenops_pod_carbon_grams:rate{long_}"
            f" / on (namespace) namespace:greenops_carbon_budget_grams:per_second > {factor})"
            f" and (namespace:greenops_pod_carbon_grams:rate{short}"
            f" / on (namespace) namespace:greenops_carbon_budget_grams:per_second > {factor})",
            f"A namespace is burning its carbon budget {how}: at over {factor:g}x its rate "
            f"for {long_}, the {period_days:g}-day budget would last under "
            f"{period_days / factor:.0f} days.",
            f"Namespace {{{{ $labels.namespace }}}} emits {{{{ $value | humanize }}}} times its "
            f"carbon budget rate over {long_} and {short} (threshold {factor}x).",
        )

    return [
        alert(
            "GreenopsGPUIdleWhileAllocated",
            "instance_gpu_uuid:greenops_process_gpu_memory_bytes:sum"
            f" >= {a['GreenopsGPUIdleWhileAllocated']['min_memory_bytes']}"
            f' and on ({GPU}) greenops_gpu_bottleneck{{class="idle"}} == 1',
            "A GPU is idle while a process holds it.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} has run no kernel for "
            f"{a['GreenopsGPUIdleWhileAllocated']['for']} while processes hold "
            "{{ $value | humanize1024 }}B of its memory.",
        ),
        alert(
            "GreenopsGPUMemoryBound",
            f'rate(greenops_gpu_bottleneck_seconds_total{{class="memory"}}'
            f"[{a['GreenopsGPUMemoryBound']['window']}]) > {a['GreenopsGPUMemoryBound']['share']}",
            "A GPU is memory-bound.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} spent "
            "{{ $value | humanizePercentage }} of its time bound by device-memory bandwidth.",
        ),
        alert(
            "GreenopsGPUOverheadBound",
            f'rate(greenops_gpu_bottleneck_seconds_total{{class="overhead"}}'
            f"[{a['GreenopsGPUOverheadBound']['window']}])"
            f" > {a['GreenopsGPUOverheadBound']['share']}",
            "A GPU is launch- or host-bound.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} spent "
            "{{ $value | humanizePercentage }} of its time running kernels that leave the SMs "
            "mostly empty.",
        ),
        alert(
            "GreenopsGPUUnderutilized",
            f"greenops_gpu_underutilization_ratio > {a['GreenopsGPUUnderutilized']['ratio']}",
            "A GPU has been under-utilised for hours.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} is "
            "{{ $value | humanizePercentage }} below its activity target.",
        ),
        alert(
            "GreenopsStrandedGPUMemory",
            f"greenops_gpu_stranded_memory_bytes >= {a['GreenopsStrandedGPUMemory']['min_bytes']}",
            "Idle work holds GPU memory.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} has "
            "{{ $value | humanize1024 }}B held by processes on a long-idle GPU.",
        ),
        alert(
            "GreenopsInferenceEnergyRegression",
            "model:greenops_inference_joules_per_request:ratio_rate1h"
            " / model:greenops_inference_joules_per_request:ratio_rate1h offset 1d"
            f" > {a['GreenopsInferenceEnergyRegression']['ratio']}",
            "Inference costs markedly more energy per request than a day earlier.",
            "Model {{ $labels.model }} of {{ $labels.source }} needs {{ $value | humanize }} "
            "times the joules per request it needed 24 hours ago.",
        ),
        burn("GreenopsCarbonBudgetBurnFast", "fast"),
        burn("GreenopsCarbonBudgetBurnSlow", "steadily"),
        alert(
            "GreenopsGPUThrottled",
            f"max by ({GPU}, reason)"
            f' (greenops_gpu_clock_event_reason{{reason=~"{THROTTLE_REASONS}"}}) == 1',
            "A GPU is throttled by power or temperature.",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} holds its clocks down: "
            "{{ $labels.reason }}.",
        ),
        alert(
            "GreenopsGPUDown",
            "greenops_gpu_up == 0",
            "A GPU cannot be read.",
            "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }} has not been "
            "read successfully: its values are stale.",
        ),
        alert(
            "GreenopsExporterAbsent",
            f"up{{{selector}}} == 0 or absent(up{{{selector}}})",
            "The greenops exporter is not scraped.",
            "Prometheus cannot scrape greenops-exporter ({{ $labels.instance }}): no GPU "
            "energy, waste or carbon is being recorded.",
        ),
        alert(
            "GreenopsSourceDown",
            "greenops_source_up == 0",
            "A carbon, inference or kubelet source is down.",
            "Source {{ $labels.name }} ({{ $labels.kind }}) on {{ $labels.instance }} has "
            "failed; the exporter uses its last good value or falls back.",
        ),
    ]


# The test profile: every duration shrunk so that a live Prometheus shows every alert in
# about a minute; the expressions and thresholds stay the same (promtool tests check the
# real durations).
TEST_DURATIONS = {"5m": "10s", "30m": "20s", "1h": "30s", "6h": "40s", "1d": "30s"}


def shrink(text: str) -> str:
    import re

    def window(match: re.Match[str]) -> str:
        return f"[{TEST_DURATIONS.get(match.group(1), '10s')}]"

    def offset(match: re.Match[str]) -> str:
        return f"offset {TEST_DURATIONS.get(match.group(1), '10s')}"

    text = re.sub(r"\[(\w+)\]", window, text)
    return re.sub(r"offset (\w+)", offset, text)  # recording rule names keep their windows


def test_profile(document: dict[str, Any]) -> dict[str, Any]:
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = shrink(rule["expr"])
            if "for" in rule:
                rule["for"] = "5s"
    return document


def render(config: dict[str, Any], budgets: dict[str, Any], profile: str = "real") -> str:
    document = {
        "groups": [
            {"name": "greenops.rules", "rules": recording_rules(budgets)},
            {"name": "greenops.alerts", "rules": alerts(config, budgets["budget_period_days"])},
        ]
    }
    if profile == "test":
        document = test_profile(document)
    header = "# Generated by alerts/generate.py from config.yaml and budgets.yaml: do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=100)


def prometheus_rule(rules_text: str) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "greenops", "labels": {"app.kubernetes.io/name": "greenops-exporter"}},
        "spec": {"groups": groups},
    }
    header = "# Generated by alerts/generate.py (the groups of alerts/greenops.rules.yml).\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--profile", choices=["real", "test"], default="real")
    parser.add_argument("--budgets", type=Path, default=HERE / "budgets.yaml")
    args = parser.parse_args(argv)
    config = yaml.safe_load((HERE / "config.yaml").read_text())
    budgets = yaml.safe_load(args.budgets.read_text())
    text = render(config, budgets, args.profile)
    outputs = {args.out: text}
    if args.profile == "real" and args.out == OUT:
        outputs[OPERATOR_OUT] = prometheus_rule(text)
    if args.check:
        stale = [str(p) for p, t in outputs.items() if not p.exists() or p.read_text() != t]
        if stale:
            print(f"stale: {', '.join(stale)}: run make rules", file=sys.stderr)
            return 1
        return 0
    for path, content in outputs.items():
        path.write_text(content)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
