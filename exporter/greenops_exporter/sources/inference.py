"""Inference servers' own counters, scraped over HTTP: requests and tokens per model.

Each server kind is read by its real metric names (parsed with client_python's text
parser): vLLM `vllm:request_success_total`, `vllm:prompt_tokens_total`,
`vllm:generation_tokens_total` by `model_name`; Triton `nv_inference_request_success`,
`nv_inference_count` by `model`; TGI `tgi_request_success`,
`tgi_request_generated_tokens_sum`, `tgi_request_input_length_sum`; or any counter by name
and label matchers. A server that is down, answers garbage, lacks a metric or resets its
counters is marked down with a counted error; the exporter carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from greenops_exporter.sources.base import HttpSource, RetryAfter, SourceError
from greenops_exporter.sources.readings import Counts, InferenceValue

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """Which samples mean what, for one kind of server."""

    requests: str
    prompt_tokens: str | None = None
    generation_tokens: str | None = None
    model_label: str | None = None
    matchers: Mapping[str, str] = field(default_factory=dict)


KINDS: dict[str, CounterSpec] = {
    "vllm": CounterSpec(
        requests="vllm:request_success_total",
        prompt_tokens="vllm:prompt_tokens_total",
        generation_tokens="vllm:generation_tokens_total",
        model_label="model_name",
    ),
    "triton": CounterSpec(requests="nv_inference_request_success", model_label="model"),
    "tgi": CounterSpec(
        requests="tgi_request_success",
        prompt_tokens="tgi_request_input_length_sum",
        generation_tokens="tgi_request_generated_tokens_sum",
    ),
}


def server_pids(url: str) -> frozenset[int]:
    """The process listening on the URL's port, and its descendants (the workers that hold
    the GPUs). Blocking (/proc scans): call it off the event loop."""
    parsed = URL(url)
    port = parsed.port
    pids: set[int] = set()
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return frozenset()
    for conn in connections:
        if (
            conn.status == psutil.CONN_LISTEN
            and conn.laddr
            and conn.laddr.port == port
            and conn.pid
        ):
            pids.add(conn.pid)
            with contextlib.suppress(psutil.Error):
                pids.update(
                    child.pid for child in psutil.Process(conn.pid).children(recursive=True)
                )
    return frozenset(pids)


def _base(name: str) -> str:
    return name.removesuffix("_total")


def parse_counts(text: str, spec: CounterSpec, default_model: str) -> Mapping[str, Counts]:
    """Exposition text -> counts per model; SourceError when the requests metric is absent."""
    # client_python's parser names a counter's sample `<name>_total` even where the server
    # wrote it without (Triton, TGI): compare names without that suffix
    wanted = {
        _base(spec.requests): "requests",
        **({_base(spec.prompt_tokens): "prompt_tokens"} if spec.prompt_tokens else {}),
        **({_base(spec.generation_tokens): "generation_tokens"} if spec.generation_tokens else {}),
    }
    totals: dict[str, dict[str, float]] = {}
    seen: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                kind = wanted.get(_base(sample.name))
                if kind is None:
                    continue
                if any(sample.labels.get(k) != v for k, v in spec.matchers.items()):
                    continue
                value = float(sample.value)
                if not math.isfinite(value):  # a NaN or infinite count is no count at all
                    continue
                seen.add(kind)
                model = default_model
                if spec.model_label:
                    model = sample.labels.get(spec.model_label, default_model)
                per_model = totals.setdefault(model, {})
                per_model[kind] = per_model.get(kind, 0.0) + value
    except (ValueError, TypeError, IndexError) as exc:
        raise SourceError(f"not Prometheus text: {exc}") from exc
    if "requests" not in seen:
        raise SourceError(f"metric {spec.requests} is missing")
    return MappingProxyType({model: Counts(**values) for model, values in totals.items()})


class InferenceSource(HttpSource[InferenceValue]):
    """One inference server's /metrics."""

    def __init__(
        self,
        name: str,
        kind: str,
        url: str,
        spec: CounterSpec,
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, interval_seconds, timeout_seconds, monotonic)
        self.kind = kind
        self.url = url
        self.spec = spec
        self.find_pids = False
        self.pids: frozenset[int] = frozenset()
        self._pids_at: float | None = None

    async def _get(self) -> str:
        try:
            async with self.session().get(self.url) as response:
                if response.status == 429 or response.status == 503:
                    retry = response.headers.get("Retry-After")
                    raise RetryAfter(
                        f"HTTP {response.status} from {self.url}",
                        float(retry) if retry and retry.isdigit() else None,
                    )
                if response.status != 200:
                    raise SourceError(f"HTTP {response.status} from {self.url}")
                body = await response.content.read(MAX_BODY_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"{self.url}: {type(exc).__name__} {exc}".strip()) from exc
        if len(body) > MAX_BODY_BYTES:
            raise SourceError(f"{self.url}: answer larger than {MAX_BODY_BYTES} bytes")
        return body.decode("utf-8", errors="replace")

    async def fetch(self) -> InferenceValue:
        counts = parse_counts(await self._get(), self.spec, default_model=self.name)
        now = self._monotonic()
        if self.find_pids and (self._pids_at is None or now - self._pids_at > 60):
            loop = asyncio.get_running_loop()
            self.pids = await loop.run_in_executor(None, server_pids, self.url)
            self._pids_at = now
        previous = self.value
        if previous is not None and any(
            counts[m].requests < previous.counts[m].requests for m in counts if m in previous.counts
        ):
            # a restart: take the new baseline, but say so (counted, down for this poll)
            self.value = InferenceValue(counts, self._monotonic(), reset=True)
            raise SourceError(f"{self.url}: counters went backwards (server restarted?)")
        return InferenceValue(counts, self._monotonic())
