"""How collection behaves: intervals, deadlines, what to read and the analysis settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..analysis.bottleneck import Thresholds
from ..analysis.footprint import FootprintSettings
from ..analysis.waste import WasteSettings
from ..backends.base import DeviceInfo, ProcessUtilizationPolicy


@dataclass(frozen=True, slots=True)
class CollectSettings:
    interval_seconds: float = 1.0
    device_timeout_seconds: float = 0.8
    energy_anchor_seconds: float = 30.0
    process_utilization: ProcessUtilizationPolicy = ProcessUtilizationPolicy.WHEN_SHARED
    backend_retry_seconds: float = 10.0
    gpm: bool = True
    processes: bool = True
    mig: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    waste: WasteSettings = field(default_factory=WasteSettings)
    identity_expire_seconds: float = 300.0
    advice_window_seconds: float = 3600.0
    footprint_for: Callable[[DeviceInfo], FootprintSettings] = lambda info: FootprintSettings()
    greenest_window_seconds: float = 4 * 3600.0
    greenest_within_seconds: float = 24 * 3600.0
