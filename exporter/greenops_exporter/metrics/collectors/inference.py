"""The `inference` collector: each inference server's energy, requests and tokens, joules and
grams per request and per token."""

from __future__ import annotations

from greenops_exporter.collect.snapshot import Snapshot
from greenops_exporter.metrics.names_accounts import (
    INFERENCE_CARBON,
    INFERENCE_ENERGY,
    INFERENCE_JOULES_PER_REQUEST,
    INFERENCE_JOULES_PER_TOKEN,
    INFERENCE_REQUESTS,
    INFERENCE_SCI_REQUEST,
    INFERENCE_SCI_TOKEN,
    INFERENCE_TOKENS,
)
from greenops_exporter.metrics.output import Families


def render(out: Families, snap: Snapshot) -> None:
    for source in snap.inference:
        for m in source.models:
            labels = (source.name, source.kind, m.model)
            out.add(INFERENCE_ENERGY, m.totals.energy_joules, None, *labels)
            out.add(INFERENCE_REQUESTS, m.totals.requests, None, *labels)
            out.add(INFERENCE_TOKENS, m.totals.prompt_tokens, None, *labels, "prompt")
            out.add(INFERENCE_TOKENS, m.totals.generation_tokens, None, *labels, "generation")
            out.add(INFERENCE_JOULES_PER_REQUEST, m.joules_per_request, None, *labels)
            out.add(
                INFERENCE_JOULES_PER_TOKEN,
                m.joules_per_generated_token,
                None,
                *labels,
                "generation",
            )
            out.add(INFERENCE_JOULES_PER_TOKEN, m.joules_per_token, None, *labels, "all")
            out.add(INFERENCE_CARBON, m.totals.carbon_grams, None, *labels)
            out.add(INFERENCE_SCI_REQUEST, m.sci_grams_per_request, None, *labels)
            out.add(INFERENCE_SCI_TOKEN, m.sci_grams_per_token, None, *labels)
