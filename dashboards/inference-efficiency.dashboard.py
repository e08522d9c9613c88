"""Inference efficiency: joules and carbon per request and per token, by source and model."""

from common import dashboard, timeseries

dashboard = dashboard(
    "greenops / Inference efficiency",
    "greenops-inference",
    "Joules per request and per token, SCI per request, by source and model, over time.",
    [
        timeseries(
            "Joules per request",
            "Energy per completed request over the exporter's window.",
            "joule",
            ("greenops_inference_joules_per_request", "{{source}} {{model}}"),
        ),
        timeseries(
            "Joules per token",
            "Energy per generated token, and per prompt-and-generated token.",
            "joule",
            ("greenops_inference_joules_per_token", "{{source}} {{model}} {{token_kind}}"),
        ),
        timeseries(
            "SCI per request",
            "(E x I + M) / R: grams CO2e per request.",
            "massg",
            ("greenops_inference_sci_grams_per_request", "{{source}} {{model}}"),
        ),
        timeseries(
            "Joules per request, 1 h",
            "The recording rule that alerts compare day on day.",
            "joule",
            ("model:greenops_inference_joules_per_request:ratio_rate1h", "{{source}} {{model}}"),
        ),
        timeseries(
            "Requests per second",
            "Completed requests.",
            "reqps",
            (
                "sum by (source, model) (rate(greenops_inference_requests_total[5m]))",
                "{{source}} {{model}}",
            ),
        ),
        timeseries(
            "Tokens per second",
            "Prompt and generated tokens.",
            "short",
            (
                "sum by (source, model, token_kind) (rate(greenops_inference_tokens_total[5m]))",
                "{{source}} {{model}} {{token_kind}}",
            ),
        ),
        timeseries(
            "Inference power",
            "Power spent serving, by model.",
            "watt",
            (
                "sum by (source, model) (rate(greenops_inference_energy_joules_total[5m]))",
                "{{source}} {{model}}",
            ),
        ),
    ],
    filters=(),  # the inference series carry no node, GPU or namespace label
)
