"""Names, HELP and labels of the exporter's own metrics: build, backend, cycles, sources."""

from __future__ import annotations

from greenops_exporter.metrics.spec import counter, gauge

# --- the exporter itself ---------------------------------------------------------------
BUILD_INFO = gauge(
    "greenops_build_info",
    "Build of the exporter; always 1.",
    "version",
    "python_version",
    "nvml_bindings_version",
    gpu=False,
)
BACKEND_INFO = gauge(
    "greenops_backend_info",
    "Where readings come from (nvml, dcgm, sim, replay) and why it was chosen; always 1.",
    "backend",
    "reason",
    gpu=False,
)
BACKEND_UP = gauge(
    "greenops_backend_up",
    "1 when the backend started (NVML loaded, scenario or recording read) and, for dcgm, "
    "dcgm-exporter's page was read on the last cycle; else 0. The exporter retries and "
    "keeps serving its own metrics meanwhile.",
    gpu=False,
)
BACKEND_ERRORS = counter(
    "greenops_backend_errors_total",
    "Failures of the backend as a whole by operation (open; for dcgm also fetch: the page "
    "did not come within its deadline or not with 200, and parse: it was no dcgm-exporter "
    "page).",
    "operation",
    gpu=False,
)
COLLECTOR_ERRORS = counter(
    "greenops_collector_errors_total",
    "Failed reads by NVML call (or 'deadline' when a read missed its deadline; for dcgm: "
    "fetch, parse, or missing when the GPU was not on the page).",
    "call",
)
COLLECTION_CYCLES = counter(
    "greenops_collection_cycles_total",
    "Collection cycles run. Collection happens on the exporter's own clock, not on scrape, "
    "so that energy integrals stay exact and every scraper sees one consistent state.",
    gpu=False,
)
COLLECTION_SKIPPED = counter(
    "greenops_collection_skipped_cycles_total",
    "Collection ticks skipped because the cycle before ran past them (cycles run on a fixed "
    "grid: a late one is skipped and counted, never run late).",
    gpu=False,
)
COLLECTION_DURATION = gauge(
    "greenops_collection_duration_seconds",
    "Wall time of the last collection cycle (all GPUs read concurrently), in seconds. "
    "Collection runs off the scrape path.",
    gpu=False,
)
COLLECTION_LAST = gauge(
    "greenops_collection_last_timestamp_seconds",
    "Unix time the last collection cycle ended.",
    gpu=False,
)
GPU_READ_DURATION = gauge(
    "greenops_gpu_read_duration_seconds",
    "Wall time of the GPU's last successful read, in seconds.",
)
GPU_LAST_SUCCESS = gauge(
    "greenops_gpu_last_success_timestamp_seconds",
    "Unix time of the GPU's last successful read.",
)
SOURCE_UP = gauge(
    "greenops_source_up",
    "1 when the source's last fetch succeeded (kubelet, inference server, carbon API), else 0.",
    "kind",
    "name",
    gpu=False,
)
SOURCE_ERRORS = counter(
    "greenops_source_errors_total",
    "Failed fetches of the source; it backs off and keeps its last good value.",
    "kind",
    "name",
    gpu=False,
)
SOURCE_AGE = gauge(
    "greenops_source_age_seconds",
    "Seconds since the source's last good fetch.",
    "kind",
    "name",
    gpu=False,
)
SCRAPE_COLLECTOR_SUCCESS = gauge(
    "greenops_scrape_collector_success",
    "1 when the named collector rendered its series from the current collection cycle, 0 "
    "when it failed (its series are left out, the others are served); rendered once per "
    "cycle, not per scrape; a switched-off collector has no series.",
    "collector",
    gpu=False,
)
SCRAPE_COLLECTOR_DURATION = gauge(
    "greenops_scrape_collector_duration_seconds",
    "Time the named collector took to render its series from the current collection cycle "
    "(once per cycle, shared by every scrape of it), in seconds.",
    "collector",
    gpu=False,
)
