"""The series of one render, grouped by metric: what every collector writes into and the
encoder reads from."""

from __future__ import annotations

from dataclasses import dataclass, field

from greenops_exporter.collect.snapshot import DeviceSnapshot
from greenops_exporter.metrics.spec import MetricSpec

Labels = tuple[str, ...]


@dataclass(slots=True)
class Family:
    spec: MetricSpec
    label_names: Labels
    series: list[tuple[Labels, float]] = field(default_factory=list)


class Families:
    """Series of one render, grouped by metric in order of first appearance; the per-GPU
    label prefix (hostname, gpu, uuid; hostname alone on per-node series) is added in this
    one place."""

    def __init__(self, hostname: str | None) -> None:
        self.hostname = hostname
        self.by_name: dict[str, Family] = {}
        self._gpu_labels: dict[int, Labels] = {}  # by device index: built once a render

    def add(
        self,
        spec: MetricSpec,
        value: float | None,
        device: DeviceSnapshot | None = None,
        *labels: str,
    ) -> None:
        if value is None:
            return
        family = self.by_name.get(spec.name)
        if family is None:
            family = self.by_name[spec.name] = Family(spec, spec.label_names(self.hostname))
        if spec.gpu:
            assert device is not None
            index = device.info.index
            prefix = self._gpu_labels.get(index)
            if prefix is None:
                prefix = self._gpu_labels[index] = self._device_labels(device)
            labels = prefix + labels
        elif spec.node and self.hostname is not None:
            labels = (self.hostname, *labels)
        family.series.append((labels, float(value)))

    def _device_labels(self, device: DeviceSnapshot) -> Labels:
        info = device.info
        if self.hostname is not None:
            return (self.hostname, str(info.index), info.uuid)
        return (str(info.index), info.uuid)
