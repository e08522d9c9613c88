"""Names, HELP and labels of the host's energy: RAPL zones and their split among processes.

Per node: hostname, no GPU labels."""

from __future__ import annotations

from greenops_exporter.metrics.spec import node_counter, node_gauge

_SOURCE = "source=counter (RAPL) or estimate (CodeCarbon 3.3.2 CPU and DRAM models, opt-in)"

HOST_ENERGY = node_counter(
    "greenops_host_energy_joules_total",
    "Energy of a host RAPL zone since the exporter started watching it, in joules; wraps of "
    "the hardware counter are corrected (never a negative increase). zone=package (a CPU "
    "socket), dram, or core, uncore (inside package) and psys (the platform): do not add "
    f"zones together. {_SOURCE}.",
    "zone",
    "package",
    "source",
)
HOST_POWER = node_gauge(
    "greenops_host_power_watts",
    f"Mean power of a host RAPL zone over the last collection interval, in watts. {_SOURCE}.",
    "zone",
    "package",
    "source",
)
HOST_ZONE_UP = node_gauge(
    "greenops_host_zone_up",
    "1 when the RAPL zone's last read succeeded, 0 while it is stale (its energy counter then "
    "holds its value).",
    "zone",
    "package",
)
HOST_READ_ERRORS = node_counter(
    "greenops_host_read_errors_total",
    "Failed reads of a RAPL zone's energy counter (or the host read missing its deadline).",
    "zone",
    "package",
)
HOST_UNSUPPORTED = node_gauge(
    "greenops_host_unsupported_capability_info",
    "Host energy that cannot be read (probed once at start): capability=rapl when there is "
    "no RAPL zone at all, rapl_energy for a zone whose energy_uj is unreadable (root-only "
    "since CVE-2020-8694); nothing is exported for it; always 1.",
    "capability",
    "zone",
    "package",
)
HOST_HOLDER_ENERGY = node_counter(
    "greenops_host_holder_energy_joules_total",
    "Host package and DRAM joules by holder: the GPU processes together (holder=process, by "
    "their CPU time) and the rest (holder=other: other processes and the idle share). The "
    f"holders add up to the zone's energy. {_SOURCE}.",
    "holder",
    "zone",
    "source",
)
HOST_PROCESS_ENERGY = node_counter(
    "greenops_host_process_energy_joules_total",
    "Host package or DRAM joules attributed to a GPU process: each interval's energy times "
    "the process's CPU seconds over the machine's busy CPU seconds. Ended processes expire. "
    f"{_SOURCE}.",
    "pid",
    "command",
    "namespace",
    "pod",
    "container",
    "container_id",
    "zone",
    "source",
)
HOST_POD_ENERGY = node_counter(
    "greenops_host_pod_energy_joules_total",
    "Host package or DRAM joules attributed to a pod's container (its GPU processes' shares); "
    "add greenops_pod_energy_joules_total for the pod's GPU + host energy. Ended pods expire. "
    f"{_SOURCE}.",
    "namespace",
    "pod",
    "container",
    "zone",
    "source",
)
HOST_CARBON = node_counter(
    "greenops_host_carbon_grams_total",
    "Operational grams of CO2e of a host zone (kWh x PUE x the grid intensity in force each "
    f"cycle); package and dram only. {_SOURCE}.",
    "zone",
    "source",
)
HOST_COST = node_counter(
    "greenops_host_cost_total",
    f"Energy cost of a host zone (kWh x PUE x price); package and dram only. {_SOURCE}.",
    "zone",
    "source",
    "currency",
)
HOST_POD_CARBON = node_counter(
    "greenops_host_pod_carbon_grams_total",
    "Operational grams of CO2e of a pod's share of host package and DRAM energy, split like "
    f"that energy. {_SOURCE}.",
    "namespace",
    "pod",
    "container",
    "source",
)
HOST_POD_COST = node_counter(
    "greenops_host_pod_cost_total",
    f"Energy cost of a pod's share of host package and DRAM energy. {_SOURCE}.",
    "namespace",
    "pod",
    "container",
    "source",
    "currency",
)
