"""One GPU in depth: why `utilization` lies, next to SM, tensor and DRAM activity."""

from common import GPU_SELECTOR as S
from common import POD_SELECTOR as P
from common import dashboard, timeseries

dashboard = dashboard(
    "greenops / GPU detail",
    "greenops-gpu",
    "Power, energy, activity, traffic, clocks and processes of the selected GPUs.",
    [
        timeseries(
            "Power",
            "Averaged (NVML, lags ~1 s) and instant board power.",
            "watt",
            (f"greenops_gpu_power_watts{{{S}}}", "{{hostname}} {{gpu}} average"),
            (f"greenops_gpu_power_instant_watts{{{S}}}", "{{hostname}} {{gpu}} instant"),
        ),
        timeseries(
            "Energy per hour",
            "Joules used per hour (from the energy counter).",
            "joule",
            (f"increase(greenops_gpu_energy_joules_total{{{S}}}[1h])", "{{hostname}} {{gpu}}"),
        ),
        timeseries(
            "Utilisation is not activity",
            "`utilization` says a kernel ran; SM, "
            "occupancy, tensor and DRAM activity say how much of the GPU worked.",
            "percentunit",
            (f"greenops_gpu_utilization_ratio{{{S}}}", "{{gpu}} utilization"),
            (f"greenops_gpu_sm_active_ratio{{{S}}}", "{{gpu}} SM active"),
            (f"greenops_gpu_sm_occupancy_ratio{{{S}}}", "{{gpu}} SM occupancy"),
            (f"greenops_gpu_tensor_active_ratio{{{S}}}", "{{gpu}} tensor"),
            (f"greenops_gpu_dram_active_ratio{{{S}}}", "{{gpu}} DRAM"),
        ),
        timeseries(
            "Bottleneck class",
            "The class that holds each GPU back now (unknown where it reports no activity).",
            "short",
            (f"greenops_gpu_bottleneck{{{S}}} == 1", "{{gpu}} {{class}}"),
        ),
        timeseries(
            "PCIe traffic",
            "Bytes per second over PCIe by direction.",
            "Bps",
            (f"rate(greenops_gpu_pcie_bytes_total{{{S}}}[5m])", "{{gpu}} {{direction}}"),
        ),
        timeseries(
            "Clocks",
            "SM and memory clocks.",
            "hertz",
            (f"greenops_gpu_clock_hertz{{{S}}}", "{{gpu}} {{clock}}"),
        ),
        timeseries(
            "Clock event reasons",
            "Reasons holding clocks down (1 while active).",
            "short",
            (f"greenops_gpu_clock_event_reason{{{S}}} == 1", "{{gpu}} {{reason}}"),
        ),
        timeseries(
            "Temperature",
            "GPU core temperature.",
            "celsius",
            (f"greenops_gpu_temperature_celsius{{{S}}}", "{{hostname}} {{gpu}}"),
        ),
        timeseries(
            "Process memory",
            "Device memory each compute process holds.",
            "bytes",
            (f"greenops_process_gpu_memory_bytes{{{S}}}", "{{gpu}} {{pid}} {{command}}"),
        ),
        timeseries(
            "Process power",
            "Each process's share of its GPU's power.",
            "watt",
            (
                f"rate(greenops_process_energy_joules_total{{{P}}}[5m])",
                "{{gpu}} {{pid}} {{command}}",
            ),
        ),
    ],
)
