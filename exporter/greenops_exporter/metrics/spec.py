"""A metric's name, type, HELP text and labels: the one shape every exported family has."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

GPU_LABELS = ("gpu", "uuid")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed; counters end in _total
    kind: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...] = ()
    gpu: bool = True  # carries gpu, uuid (and hostname) labels

    def label_names(self, hostname: str | None) -> tuple[str, ...]:
        """Per-GPU metrics carry gpu and uuid first, and hostname before them when set."""
        if not self.gpu:
            return self.labels
        if hostname is None:
            return (*GPU_LABELS, *self.labels)
        return ("hostname", *GPU_LABELS, *self.labels)

    def family(self, hostname: str | None) -> GaugeMetricFamily | CounterMetricFamily:
        """The same metric as a client_python family (for its registry and encoders)."""
        labels = list(self.label_names(hostname))
        if self.kind == "counter":
            return CounterMetricFamily(self.name.removesuffix("_total"), self.help, labels=labels)
        return GaugeMetricFamily(self.name, self.help, labels=labels)


def gauge(name: str, help: str, *labels: str, gpu: bool = True) -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels, gpu)


def counter(name: str, help: str, *labels: str, gpu: bool = True) -> MetricSpec:
    return MetricSpec(name, "counter", help, labels, gpu)
