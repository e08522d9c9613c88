"""Fleet overview: what the GPUs (and their hosts' CPUs and DRAM) draw, what that costs in
carbon and money, and how much of it is waste (idle or overhead-bound)."""

from common import GPU_SELECTOR as S
from common import POD_SELECTOR as P
from common import dashboard, stat, timeseries

dashboard = dashboard(
    "greenops / Fleet overview",
    "greenops-fleet",
    "Power, energy, carbon and cost of the GPU fleet, and the share that is waste.",
    [
        stat(
            "Power now",
            "Board power of the selected GPUs.",
            "watt",
            f"sum(greenops_gpu_power_watts{{{S}}})",
        ),
        stat(
            "Energy, 24 h",
            "Energy the selected GPUs used over the last day.",
            "joule",
            f"sum(increase(greenops_gpu_energy_joules_total{{{S}}}[24h]))",
        ),
        stat(
            "Carbon, 24 h",
            "Operational and embodied CO2e over the last day.",
            "massg",
            f"sum(increase(greenops_gpu_carbon_grams_total{{{S}}}[24h]))",
        ),
        stat(
            "Waste share, 24 h",
            "Share of the classified energy spent idle or overhead-bound (energy of GPUs that "
            "report no activity, class unknown, is neither waste nor work: see the next panel).",
            "percentunit",
            f'sum(increase(greenops_gpu_bottleneck_energy_joules_total{{class=~"idle|overhead",{S}}}[24h]))'
            " / "
            f'sum(increase(greenops_gpu_bottleneck_energy_joules_total{{class!="unknown",{S}}}[24h]))',
        ),
        stat(
            "Unclassified share, 24 h",
            "Share of the energy with no class (unknown): GPUs that report no activity, such as "
            "a dcgm-exporter page without DCGM_FI_DEV_GPU_UTIL or a vGPU; 0 when every GPU "
            "reports it.",
            "percentunit",
            f'sum(increase(greenops_gpu_bottleneck_energy_joules_total{{class="unknown",{S}}}[24h]))'
            f" / sum(increase(greenops_gpu_energy_joules_total{{{S}}}[24h]))",
        ),
        timeseries(
            "Fleet power",
            "Total board power of the selected GPUs.",
            "watt",
            (f"sum(greenops_gpu_power_watts{{{S}}})", "fleet"),
        ),
        timeseries(
            "Node power: GPU, CPU, DRAM",
            "Each node's power split into its GPUs, its CPU packages and its DRAM (RAPL, where "
            "the host counters are readable; recording rule).",
            "watt",
            (
                'hostname_part:greenops_node_energy_joules:rate5m{hostname=~"$hostname"}',
                "{{hostname}} {{part}}",
            ),
            stack=True,
        ),
        timeseries(
            "Energy by bottleneck class",
            "Where the joules go: compute, memory, io, overhead or idle, and unknown where a "
            "GPU reports no activity (selected GPUs).",
            "watt",
            (
                f"sum by (class) (rate(greenops_gpu_bottleneck_energy_joules_total{{{S}}}[5m]))",
                "{{class}}",
            ),
            stack=True,
        ),
        timeseries(
            "GPUs per class now",
            "How many GPUs are in each bottleneck class (unknown: no activity reported).",
            "short",
            (f"sum by (class) (greenops_gpu_bottleneck{{{S}}})", "{{class}}"),
            stack=True,
        ),
        timeseries(
            "Idle power by holder",
            "Power burnt idle, with a process holding the GPU or "
            "with none (selected GPUs).",
            "watt",
            (
                f"sum by (holder) (rate(greenops_gpu_idle_energy_joules_total{{{S}}}[5m]))",
                "{{holder}}",
            ),
            stack=True,
        ),
        timeseries(
            "Top wasteful GPUs",
            "The five GPUs burning most power idle or overhead-bound.",
            "watt",
            (
                f"topk(5, sum by (hostname, gpu) (rate(greenops_gpu_bottleneck_energy_joules_total"
                f'{{class=~"idle|overhead",{S}}}[1h])))',
                "{{hostname}} GPU {{gpu}}",
            ),
        ),
        timeseries(
            "Top pods by power",
            "The five pods drawing most GPU power.",
            "watt",
            (
                "topk(5, sum by (namespace, pod) (rate(greenops_pod_energy_joules_total"
                f"{{{P}}}[1h])))",
                "{{namespace}}/{{pod}}",
            ),
        ),
        timeseries(
            "Joules per request by model",
            "Energy per completed inference request (recording rule over 1 h).",
            "joule",
            ("model:greenops_inference_joules_per_request:ratio_rate1h", "{{source}} {{model}}"),
        ),
        timeseries(
            "Carbon by scope",
            "Operational and embodied CO2e per second (selected GPUs).",
            "si:g/s",
            (f"sum by (scope) (rate(greenops_gpu_carbon_grams_total{{{S}}}[5m]))", "{{scope}}"),
            stack=True,
        ),
    ],
)
