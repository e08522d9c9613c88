"""Names, HELP and labels of the accounts: joules per inference, carbon and cost."""

from __future__ import annotations

from greenops_exporter.metrics.spec import counter, gauge

# --- inference -------------------------------------------------------------------------
INFERENCE_ENERGY = counter(
    "greenops_inference_energy_joules_total",
    "Joules spent by an inference server's GPUs (or its processes' shares of shared GPUs) "
    "plus its GPU processes' share of the host's CPU package and DRAM energy where RAPL "
    "measures it (never an estimate), split among its models by their share of requests.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_REQUESTS = counter(
    "greenops_inference_requests_total",
    "Requests the server completed (its own counter, restarts smoothed out).",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_TOKENS = counter(
    "greenops_inference_tokens_total",
    "Tokens the server processed, by kind (prompt, generation).",
    "source",
    "kind",
    "model",
    "token_kind",
    gpu=False,
)
INFERENCE_JOULES_PER_REQUEST = gauge(
    "greenops_inference_joules_per_request",
    "Joules per completed request over the inference window: GPU plus the host CPU and "
    "DRAM share of the server's GPU processes where RAPL measures it.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_JOULES_PER_TOKEN = gauge(
    "greenops_inference_joules_per_token",
    "Joules per token over the inference window (GPU plus measured host CPU and DRAM "
    "share): per generated token (token_kind=generation) or per prompt and generated token "
    "(token_kind=all).",
    "source",
    "kind",
    "model",
    "token_kind",
    gpu=False,
)
# --- carbon and cost -------------------------------------------------------------------
GPU_CARBON = counter(
    "greenops_gpu_carbon_grams_total",
    "Grams of CO2e: operational (kWh x PUE x the grid intensity in force each cycle) and "
    "embodied (the GPU's manufacturing footprint spread over its lifetime, per the SCI spec).",
    "scope",
)
POD_CARBON = counter(
    "greenops_pod_carbon_grams_total",
    "Grams of CO2e attributed to a pod's container on this GPU, by scope, split like energy.",
    "namespace",
    "pod",
    "container",
    "scope",
)
GPU_COST = counter(
    "greenops_gpu_cost_total",
    "Money spent on the GPU: energy (kWh x PUE x price) and rental (hours x hourly price).",
    "kind",
    "currency",
)
GPU_WASTE_COST = counter(
    "greenops_gpu_waste_cost_total",
    "Energy and rental cost of the time the GPU spent idle or overhead-bound.",
    "class",
    "currency",
)
POD_COST = counter(
    "greenops_pod_cost_total",
    "Energy and rental cost attributed to a pod's container on this GPU, split like energy.",
    "namespace",
    "pod",
    "container",
    "currency",
)
POD_WASTE_COST = counter(
    "greenops_pod_waste_cost_total",
    "A pod's share of the cost of the time its GPU spent idle or overhead-bound.",
    "namespace",
    "pod",
    "container",
    "class",
    "currency",
)
HOLDER_COST = counter(
    "greenops_gpu_holder_cost_total",
    "The GPU's energy and rental cost by who held it: pods (holder=pod, the sum of "
    "greenops_pod_cost_total), processes outside any pod (holder=process) and nobody "
    "(holder=none: no process had a context); the holders add up to greenops_gpu_cost_total.",
    "holder",
    "currency",
)
HOLDER_SECONDS = counter(
    "greenops_gpu_holder_seconds_total",
    "Seconds the GPU was held, by holder (pod, process outside a pod, none); a GPU shared "
    "by n processes gives each 1/n of the time, so the holders add up to the GPU's seconds.",
    "holder",
)
POD_GPU_SECONDS = counter(
    "greenops_pod_gpu_seconds_total",
    "GPU-seconds a pod's container held this GPU: a GPU shared by n processes gives each "
    "1/n of the time (never a shared GPU charged as whole).",
    "namespace",
    "pod",
    "container",
)
POD_GPU_IDLE_SECONDS = counter(
    "greenops_pod_gpu_idle_seconds_total",
    "The part of greenops_pod_gpu_seconds_total in which the GPU was idle (held, no work).",
    "namespace",
    "pod",
    "container",
)
GRID_INTENSITY = gauge(
    "greenops_grid_carbon_intensity_grams_per_kwh",
    "The grid carbon intensity in force, in gCO2e/kWh, and where it came from (a live API or "
    "the static table).",
    "source",
    "zone",
    gpu=False,
)
FORECAST_MIN = gauge(
    "greenops_grid_carbon_intensity_forecast_min_grams_per_kwh",
    "The lowest intensity in the current forecast, in gCO2e/kWh.",
    "zone",
    gpu=False,
)
GREENEST_START = gauge(
    "greenops_greenest_window_start_timestamp_seconds",
    "Unix time at which the greenest window of the configured length starts, within the "
    "configured horizon.",
    "zone",
    gpu=False,
)
GREENEST_MEAN = gauge(
    "greenops_greenest_window_mean_grams_per_kwh",
    "Mean forecast intensity over the greenest window, in gCO2e/kWh.",
    "zone",
    gpu=False,
)
GREENEST_SAVING = gauge(
    "greenops_greenest_window_saving_ratio",
    "Share of carbon saved by starting at the greenest window instead of now, 0..1.",
    "zone",
    gpu=False,
)
INFERENCE_CARBON = counter(
    "greenops_inference_carbon_grams_total",
    "Grams of CO2e of an inference server's work, by model: GPU operational and embodied, "
    "plus the operational carbon of its measured host CPU and DRAM share.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_SCI_REQUEST = gauge(
    "greenops_inference_sci_grams_per_request",
    "Software Carbon Intensity per request over the inference window: (E x I + M) / R, "
    "grams; E covers GPU and measured host CPU and DRAM, M the GPU's embodied share.",
    "source",
    "kind",
    "model",
    gpu=False,
)
INFERENCE_SCI_TOKEN = gauge(
    "greenops_inference_sci_grams_per_token",
    "Software Carbon Intensity per prompt and generated token over the window, grams; E "
    "covers GPU and measured host CPU and DRAM, M the GPU's embodied share.",
    "source",
    "kind",
    "model",
    gpu=False,
)
