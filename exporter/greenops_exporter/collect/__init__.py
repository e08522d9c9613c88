"""Collection: the loop that reads every device on its own clock and publishes Snapshots."""

from greenops_exporter.collect.loop import Collector, InferenceBinding
from greenops_exporter.collect.settings import CollectSettings
from greenops_exporter.collect.snapshot import (
    Costs,
    DeviceSnapshot,
    InferenceSnapshot,
    PodCosts,
    Snapshot,
    Waste,
)

__all__ = [
    "CollectSettings",
    "Collector",
    "Costs",
    "DeviceSnapshot",
    "InferenceBinding",
    "InferenceSnapshot",
    "PodCosts",
    "Snapshot",
    "Waste",
]
