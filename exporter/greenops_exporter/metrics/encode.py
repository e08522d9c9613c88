"""Snapshot -> /metrics bytes (Prometheus text 0.0.4 or OpenMetrics 1.0), cheaply.

Label sets change rarely while values change every cycle, so each series' name-and-labels
is rendered and escaped once and reused while only the value is formatted again.
client_python's encoders validate and escape every label of every series on every call:
for 1,455 series that was 16.8 ms a scrape on a 2-core machine, the largest share of the
exporter's own CPU. The output is the same text (a test parses both and compares).
"""

from __future__ import annotations

import math
import platform
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from greenops_exporter import __version__
from greenops_exporter.collect.snapshot import Snapshot
from greenops_exporter.metrics.families import Families, Labels, render
from greenops_exporter.metrics.names import COLLECTOR_NAMES

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _series_prefix(name: str, label_names: Labels, labels: Labels) -> str:
    if not label_names:
        return name + " "
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in zip(label_names, labels, strict=True))
    return f"{name}{{{inner}}} "


def format_value(value: float) -> str:
    """Go's float format, as Prometheus writes it (client_python's floatToGoString)."""
    if -math.inf < value < 1e6:  # nearly every value: Python's repr is Go's (NaN fails)
        return repr(value)
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def bindings_version() -> str:
    try:
        return metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        return "absent"


class Exposition:
    """Encodes Snapshots for /metrics. One per serving exporter: it remembers the rendered
    series prefixes of the last encoding (and forgets those of series that went away)."""

    def __init__(
        self,
        hostname: str | None,
        enabled: Sequence[str] = COLLECTOR_NAMES,
        extra: CollectorRegistry | None = None,
    ) -> None:
        self.hostname = hostname
        self.enabled = tuple(name for name in COLLECTOR_NAMES if name in enabled)
        self.extra = extra  # client_python collectors (the process metrics), encoded by it
        self.build = (__version__, platform.python_version(), bindings_version())
        self._prefixes: dict[str, dict[Labels, str]] = {}  # per family, by label values
        self._headers: dict[tuple[str, bool], str] = {}
        self._lock = threading.Lock()  # text and OpenMetrics may be encoded at once

    def families(self, snap: Snapshot) -> Families:
        return render(snap, self.hostname, self.enabled, self.build)

    def encode(
        self, snap: Snapshot, openmetrics: bool = False, names: Collection[str] = ()
    ) -> bytes:
        """The body for one Snapshot; `names` (from ?name[]=) keeps only those families."""
        families = self.families(snap)
        with self._lock:
            text = self._encode(families, openmetrics, set(names))
        return text.encode() + self._extra(openmetrics, names)

    def _encode(self, families: Families, openmetrics: bool, names: set[str]) -> str:
        parts: list[str] = []
        for family in families.by_name.values():
            spec = family.spec
            if names and not {spec.name, spec.name.removesuffix("_total")} & names:
                continue
            header = self._headers.get((spec.name, openmetrics))
            if header is None:
                header = self._headers[spec.name, openmetrics] = self._header(
                    spec.name, spec.kind, spec.help, openmetrics
                )
            parts.append(header)
            label_names, name, series = family.label_names, spec.name, family.series
            prefixes = self._prefixes.get(name)
            if prefixes is None or len(prefixes) > 2 * len(series) + 64:
                # new, or mostly series that went away (churning pods): start afresh
                prefixes = self._prefixes[name] = {}
            for labels, value in series:
                prefix = prefixes.get(labels)
                if prefix is None:
                    prefix = prefixes[labels] = _series_prefix(name, label_names, labels)
                text = repr(value) if -1e6 < value < 1e6 else format_value(value)
                parts.append(f"{prefix}{text}\n")
        return "".join(parts)

    @staticmethod
    def _header(name: str, kind: str, help: str, openmetrics: bool) -> str:
        family = name.removesuffix("_total") if openmetrics and kind == "counter" else name
        return f"# HELP {family} {_escape_help(help, openmetrics)}\n# TYPE {family} {kind}\n"

    def _extra(self, openmetrics: bool, names: Collection[str]) -> bytes:
        """client_python encodes the few process metrics; OpenMetrics ends with # EOF."""
        from prometheus_client.exposition import generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as om_latest

        if self.extra is None:
            return b"# EOF\n" if openmetrics else b""
        registry: Any = _Restricted(self.extra, set(names)) if names else self.extra
        body: bytes = om_latest(registry) if openmetrics else generate_latest(registry)  # type: ignore[no-untyped-call]
        return body


class _Restricted(Collector):
    """The families of a registry whose name (or a sample's name) was asked for."""

    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name in self._names or any(s.name in self._names for s in family.samples):
                yield family


class SnapshotCollector(Collector):
    """The same series as a client_python custom collector, for a CollectorRegistry and
    client_python's encoders: the reference the fast encoder is tested against."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        hostname: str | None,
        enabled: Sequence[str] = COLLECTOR_NAMES,
    ) -> None:
        self._snapshot = snapshot
        self._exposition = Exposition(hostname, enabled)

    def collect(self) -> Iterator[Metric]:
        for family in self._exposition.families(self._snapshot()).by_name.values():
            metric = family.spec.family(self._exposition.hostname)
            for labels, value in family.series:
                metric.add_metric(list(labels), value)
            yield metric
