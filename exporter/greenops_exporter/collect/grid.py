"""The grid carbon in force for a cycle: one intensity, its forecast, the greenest window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from greenops_exporter.analysis.carbon import GreenestWindow, greenest_window
from greenops_exporter.sources.carbon_intensity import (
    CarbonChain,
    CarbonReading,
    Intensity,
    NoIntensity,
)
from greenops_exporter.sources.readings import ForecastPoint


class GridInForce:
    """One intensity holds for a whole cycle, so every GPU, pod and inference source of the
    cycle is charged the same grams per kWh, and the forecast shown is that intensity's
    zone's. The greenest window is worked out again only when the forecast changes."""

    def __init__(
        self,
        chain: CarbonChain,
        wall: Callable[[], float],
        window_seconds: float,
        within_seconds: float,
    ) -> None:
        self.chain = chain
        self._wall = wall
        self._window = timedelta(seconds=window_seconds)
        self._within = timedelta(seconds=within_seconds)
        self._reading = self._in_force(chain.fallback)  # until the first cycle
        self._greenest_for: tuple[ForecastPoint, ...] | None = None
        self._greenest: GreenestWindow | None = None

    @staticmethod
    def _in_force(answer: Callable[[], CarbonReading]) -> CarbonReading | None:
        """None for a zone that only a live source serves (`carbon.zone: US-CAL-CISO`)
        while that source has no fresh value: the carbon is then unknown (no intensity
        exported, the carbon counters still), never another zone's figure."""
        try:
            return answer()
        except NoIntensity:
            return None

    def begin_cycle(self) -> None:
        self._reading = self._in_force(self.chain.current)

    @property
    def intensity(self) -> Intensity | None:
        return self._reading.now if self._reading is not None else None

    def grams_per_kwh(self) -> float:
        return self._reading.now.grams_per_kwh if self._reading is not None else 0.0

    def forecast(self) -> tuple[ForecastPoint, ...]:
        return self.chain.forecast(self._reading) if self._reading is not None else ()

    def greenest(self) -> GreenestWindow | None:
        forecast = self.forecast()
        if forecast != self._greenest_for:
            self._greenest_for = forecast
            self._greenest = greenest_window(
                forecast, datetime.fromtimestamp(self._wall(), UTC), self._window, self._within
            )
        return self._greenest
