"""How collection behaves: intervals, deadlines, what to read and the analysis settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from greenops_exporter.analysis.bottleneck import Thresholds
from greenops_exporter.analysis.footprint import FootprintSettings
from greenops_exporter.analysis.waste import WasteSettings
from greenops_exporter.backends.base import DeviceInfo, ProcessUtilizationPolicy


@dataclass(frozen=True, slots=True)
class HostSettings:
    """The host collector's: where RAPL is, the opt-in estimate, and the carbon and cost
    settings its energy is priced with (the GPUs' PUE, energy price and currency)."""

    powercap_root: Path = Path("/sys/class/powercap")
    estimate: bool = False  # CodeCarbon 3.3.2's CPU and DRAM models where RAPL cannot be read
    cpu_tdp_watts: float | None = None
    identity_expire_seconds: float = 300.0
    pue: float = 1.0
    energy_price_per_kwh: float = 0.0
    currency: str = "USD"


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
    host: HostSettings | None = None  # None: the host collector is off
