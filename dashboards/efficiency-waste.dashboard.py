"""Efficiency and waste: idle and overhead energy, stranded memory, under-utilisation and
what to do about it."""

from common import GPU_SELECTOR as S
from common import POD_SELECTOR as P
from common import dashboard, timeseries

dashboard = dashboard(
    "greenops / Efficiency and waste",
    "greenops-waste",
    "Idle energy (with and without a holder), overhead energy, stranded memory, "
    "under-utilisation and MIG right-sizing.",
    [
        timeseries(
            "Idle power by holder",
            "Power burnt idle while a process holds the GPU, or with no process.",
            "watt",
            (
                f"sum by (holder) (rate(greenops_gpu_idle_energy_joules_total{{{S}}}[5m]))",
                "{{holder}}",
            ),
            stack=True,
        ),
        timeseries(
            "Overhead-bound power",
            "Power of GPUs whose kernels leave the SMs mostly empty.",
            "watt",
            (
                f'rate(greenops_gpu_bottleneck_energy_joules_total{{class="overhead",{S}}}[5m])',
                "{{hostname}} {{gpu}}",
            ),
        ),
        timeseries(
            "GPU time by class",
            "GPU-seconds per second in each bottleneck class (unknown: the GPU reports no "
            "activity, so no class is asserted).",
            "short",
            (
                f"sum by (class) (rate(greenops_gpu_bottleneck_seconds_total{{{S}}}[5m]))",
                "{{class}}",
            ),
            stack=True,
        ),
        timeseries(
            "Stranded memory",
            "Memory held on GPUs idle longer than the stranded time.",
            "bytes",
            (f"greenops_gpu_stranded_memory_bytes{{{S}}}", "{{hostname}} {{gpu}}"),
        ),
        timeseries(
            "Stranded memory by holder",
            "Who holds the stranded memory.",
            "bytes",
            (f"greenops_process_stranded_memory_bytes{{{P}}}", "{{pod}} {{command}} ({{pid}})"),
        ),
        timeseries(
            "Under-utilisation",
            "max(0, (target - activity) / target), averaged.",
            "percentunit",
            (f"greenops_gpu_underutilization_ratio{{{S}}}", "{{hostname}} {{gpu}}"),
        ),
        timeseries(
            "MIG right-sizing",
            "Share of the GPU the smallest fitting MIG profile would free.",
            "percentunit",
            (
                f"greenops_gpu_mig_rightsize_freed_ratio{{{S}}}"
                f" * on (hostname, gpu, uuid) group_left(profile) greenops_gpu_mig_rightsize_info",
                "{{gpu}} fits {{profile}}",
            ),
        ),
        timeseries(
            "Recommendations",
            "One recommendation per GPU (the legend says it).",
            "short",
            (f"greenops_gpu_recommendation_info{{{S}}}", "{{gpu}}: {{text}}"),
        ),
    ],
)
