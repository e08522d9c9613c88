"""Joules per request and per token: a source's energy against its servers' own counters.

Energy reaches a source every collection cycle (its GPUs' energy, or its processes' shares
of shared GPUs). Each time the server's counters are fetched anew, the energy since the last
fetch is split among the server's models by their share of the new requests (of tokens when
no request finished, evenly when nothing moved), and a point (time, energy, requests,
tokens) is kept per model. The windowed ratios compare the first and last point in the
window, so they are exact when the window holds whole fetches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from greenops_exporter.analysis.carbon import sci
from greenops_exporter.sources.readings import Counts, InferenceValue


@dataclass(frozen=True, slots=True)
class ModelTotals:
    energy_joules: float = 0.0
    requests: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    carbon_grams: float = 0.0  # operational + embodied

    def plus(self, energy: float, grams: float, delta: Counts) -> ModelTotals:
        return ModelTotals(
            self.energy_joules + energy,
            self.requests + delta.requests,
            self.prompt_tokens + delta.prompt_tokens,
            self.generation_tokens + delta.generation_tokens,
            self.carbon_grams + grams,
        )


@dataclass(frozen=True, slots=True)
class ModelEfficiency:
    model: str
    totals: ModelTotals
    joules_per_request: float | None
    joules_per_generated_token: float | None
    joules_per_token: float | None
    sci_grams_per_request: float | None = None
    sci_grams_per_token: float | None = None


def counter_increase(old: Counts | None, new: Counts) -> Counts:
    """Increase since the last fetch; a model seen for the first time counts from zero."""
    if old is None:
        return new
    return Counts(
        max(new.requests - old.requests, 0.0),
        max(new.prompt_tokens - old.prompt_tokens, 0.0),
        max(new.generation_tokens - old.generation_tokens, 0.0),
    )


def split_by_work(energy: float, deltas: Mapping[str, Counts]) -> dict[str, float]:
    if not deltas:
        return {}
    for weights in (
        {m: c.requests for m, c in deltas.items()},
        {m: c.prompt_tokens + c.generation_tokens for m, c in deltas.items()},
    ):
        total = sum(weights.values())
        if total > 0:
            return {m: energy * w / total for m, w in weights.items()}
    return {m: energy / len(deltas) for m in deltas}


class InferenceAccount:
    def __init__(self, window_seconds: float = 60.0) -> None:
        self.window_seconds = window_seconds
        self.energy_joules = 0.0
        self.carbon_grams = 0.0
        self._carbon_at_fetch = 0.0
        self.totals: dict[str, ModelTotals] = {}
        self._counts: Mapping[str, Counts] | None = None
        self._fetched_at: float | None = None
        self._energy_at_fetch = 0.0
        self._points: dict[str, deque[tuple[float, ModelTotals]]] = {}

    def add_energy(self, joules: float, grams: float = 0.0) -> None:
        self.energy_joules += joules
        self.carbon_grams += grams

    def observe(self, value: InferenceValue | None, now: float) -> None:
        """Take a fetch of the server's counters (ignored if already seen)."""
        if value is None or value.fetched_at == self._fetched_at:
            return
        self._fetched_at = value.fetched_at
        energy = self.energy_joules - self._energy_at_fetch
        self._energy_at_fetch = self.energy_joules
        carbon = self.carbon_grams - self._carbon_at_fetch
        self._carbon_at_fetch = self.carbon_grams
        if self._counts is None or value.reset:
            self._counts = value.counts  # a new baseline: nothing to attribute yet
            return
        old = self._counts
        self._counts = value.counts
        deltas = {m: counter_increase(old.get(m), c) for m, c in value.counts.items()}
        shares = split_by_work(1.0, deltas)
        for model, share in shares.items():
            totals = self.totals.get(model, ModelTotals()).plus(
                energy * share, carbon * share, deltas[model]
            )
            self.totals[model] = totals
            points = self._points.setdefault(model, deque())
            points.append((now, totals))
            while len(points) > 2 and points[1][0] <= now - self.window_seconds:
                points.popleft()

    def efficiency(self) -> list[ModelEfficiency]:
        out = []
        for model, totals in sorted(self.totals.items()):
            points = self._points.get(model)
            jpr = jpg = jpt = sci_r = sci_t = None
            if points and len(points) >= 2:
                (_, first), (_, last) = points[0], points[-1]
                energy = last.energy_joules - first.energy_joules
                requests = last.requests - first.requests
                generated = last.generation_tokens - first.generation_tokens
                tokens = generated + last.prompt_tokens - first.prompt_tokens
                jpr = energy / requests if requests > 0 else None
                jpg = energy / generated if generated > 0 else None
                jpt = energy / tokens if tokens > 0 else None
                grams = last.carbon_grams - first.carbon_grams
                sci_r = sci(grams, 0.0, requests)  # grams already hold E x I + M
                sci_t = sci(grams, 0.0, tokens)
            out.append(ModelEfficiency(model, totals, jpr, jpg, jpt, sci_r, sci_t))
        return out
