"""Collection: the loop that reads every device on its own clock and publishes Snapshots."""

from .loop import Collector, InferenceBinding
from .settings import CollectSettings
from .snapshot import (
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
