"""Grid carbon intensity: a static table that always answers, and live APIs before it.

Every API adapter has the one source shape (fetch, parse, keep the last good value with its
age, back off, report up/errors/age). A `CarbonChain` asks them in the configured order and
falls back, ending at the static table, so there is always an intensity in force and a
`source` label that says where it came from. Tokens and passwords live in SecretStr values
and are never logged or put in an error message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from greenops_exporter.sources.base import HttpSource, RetryAfter, SourceError
from greenops_exporter.sources.carbon_static import (
    STATIC,
    WORLD_FALLBACK,
    StaticValue,
    UnknownZone,
    parse_zone,
)
from greenops_exporter.sources.readings import ForecastPoint

LB_PER_MWH_TO_G_PER_KWH = 0.45359237  # WattTime's unit: 1 lb = 453.59237 g; 1 MWh = 1000 kWh

__all__ = ["STATIC", "WORLD_FALLBACK", "StaticValue", "UnknownZone", "parse_zone"]


@dataclass(frozen=True, slots=True)
class Intensity:
    grams_per_kwh: float
    source: str  # "static", "electricitymaps", "watttime", "uk", "carbon_aware_sdk", "override"
    zone: str


@dataclass(frozen=True, slots=True)
class CarbonReading:
    now: Intensity
    forecast: tuple[ForecastPoint, ...] = ()


def static_intensity(zone: str, override: float | None = None) -> tuple[Intensity, StaticValue]:
    """The table's figure for a zone; an unknown zone raises UnknownZone (never the world
    average under the zone's name)."""
    if override is not None:
        value = StaticValue(override, "user override", datetime.now(UTC).year)
        return Intensity(override, "override", zone), value
    zone = parse_zone(zone)
    value = STATIC[zone]
    return Intensity(value.grams_per_kwh, "static", zone), value


def parse_time(text: Any) -> datetime:
    """ISO 8601 with Z, offsets, or the UK API's minutes-only form ("2026-11-23T10:30Z")."""
    if not isinstance(text, str):
        raise ValueError(f"expected a time string, got {type(text).__name__}")
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CarbonApi(HttpSource[CarbonReading]):
    """The HTTP part every carbon API shares: JSON GETs with a deadline and clear errors."""

    def __init__(
        self,
        name: str,
        base_url: str,
        zone: str,
        interval_seconds: float = 300.0,
        timeout_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, interval_seconds, timeout_seconds, monotonic)
        self.base_url = base_url.rstrip("/")
        self.zone = zone

    async def _json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: aiohttp.BasicAuth | None = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        try:
            async with self.session().get(url, params=params, headers=headers) as r:
                if r.status == 429:
                    retry = r.headers.get("Retry-After", "")
                    raise RetryAfter(
                        f"HTTP 429 from {path}", float(retry) if retry.isdigit() else None
                    )
                if r.status in (401, 403):
                    raise SourceError(
                        f"HTTP {r.status} from {path} (credentials refused, or a rate limit)"
                    )
                if r.status != 200:
                    raise SourceError(f"HTTP {r.status} from {path}")
                try:
                    return await r.json(content_type=None)
                except ValueError as exc:
                    raise SourceError(f"{path}: not JSON") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"{path}: {type(exc).__name__}") from exc


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceError(f"{what}: expected a number, got {type(value).__name__}")
    return float(value)


class ElectricityMaps(CarbonApi):
    """Electricity Maps v3: `carbon-intensity/latest` and `/forecast` by zone, `auth-token`."""

    kind = "electricitymaps"

    def __init__(
        self, base_url: str, zone: str, token: str, name: str | None = None, **kw: Any
    ) -> None:
        super().__init__(name or self.kind, base_url, zone, **kw)
        self._token = token

    async def fetch(self) -> CarbonReading:
        headers = {"auth-token": self._token}
        latest = await self._json("/v3/carbon-intensity/latest", {"zone": self.zone}, headers)
        if not isinstance(latest, dict):
            raise SourceError("latest: expected an object")
        now = Intensity(
            _number(latest.get("carbonIntensity"), "carbonIntensity"), self.kind, self.zone
        )
        forecast: tuple[ForecastPoint, ...] = ()
        try:
            body = await self._json("/v3/carbon-intensity/forecast", {"zone": self.zone}, headers)
            forecast = tuple(
                ForecastPoint(parse_time(p["datetime"]), _number(p["carbonIntensity"], "forecast"))
                for p in body["forecast"]
            )
        except (SourceError, KeyError, TypeError, ValueError):
            forecast = ()  # forecasts need a paid plan: the current value still counts
        return CarbonReading(now, forecast)


class WattTime(CarbonApi):
    """WattTime v3: log in with HTTP Basic for a bearer token (30 min), then the MOER
    forecast; marginal emissions arrive in lb/MWh and are converted to g/kWh."""

    kind = "watttime"
    TOKEN_SECONDS = 30 * 60

    def __init__(
        self,
        base_url: str,
        region: str,
        username: str,
        password: str,
        name: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name or self.kind, base_url, region, **kw)
        self._username = username
        self._password = password
        self._token: str | None = None
        self._token_at = 0.0

    async def _login(self) -> str:
        credentials = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        body = await self._json("/login", headers={"Authorization": f"Basic {credentials}"})
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError("login: no token in the answer")
        self._token, self._token_at = token, self._monotonic()
        return token

    async def fetch(self) -> CarbonReading:
        if self._token is None or self._monotonic() - self._token_at > self.TOKEN_SECONDS - 60:
            await self._login()
        params = {"region": self.zone, "signal_type": "co2_moer"}
        try:
            body = await self._json(
                "/v3/forecast", params, {"Authorization": f"Bearer {self._token}"}
            )
        except SourceError as exc:
            if "HTTP 401" not in str(exc) and "HTTP 403" not in str(exc):
                raise
            token = await self._login()  # expired or revoked: log in again, once
            body = await self._json("/v3/forecast", params, {"Authorization": f"Bearer {token}"})
        try:
            points = tuple(
                ForecastPoint(
                    parse_time(p["point_time"]),
                    _number(p["value"], "value") * LB_PER_MWH_TO_G_PER_KWH,
                )
                for p in body["data"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"forecast: unexpected shape ({type(exc).__name__})") from exc
        if not points:
            raise SourceError("forecast: no data points")
        return CarbonReading(Intensity(points[0].grams_per_kwh, self.kind, self.zone), points)


class UkCarbonIntensity(CarbonApi):
    """The UK Carbon Intensity API (no auth): national or regional, half-hourly forecast."""

    kind = "uk"

    def __init__(
        self, base_url: str, region_id: int | None = None, name: str | None = None, **kw: Any
    ) -> None:
        zone = f"GB-{region_id}" if region_id else "GB"
        super().__init__(name or self.kind, base_url, zone, **kw)
        self.region_id = region_id

    @staticmethod
    def _periods(body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise SourceError("expected {'data': [...]}")
        data = body["data"]
        if data and isinstance(data[0], dict) and isinstance(data[0].get("data"), list):
            data = data[0]["data"]  # regional answers nest one level deeper
        return [p for p in data if isinstance(p, dict)]

    @staticmethod
    def _value(period: dict[str, Any]) -> float:
        intensity = period.get("intensity") or {}
        if not isinstance(intensity, dict):
            raise SourceError("intensity: expected an object")
        actual = intensity.get("actual")  # null in the future and for regions
        return _number(actual if actual is not None else intensity.get("forecast"), "intensity")

    async def fetch(self) -> CarbonReading:
        path = f"/regional/regionid/{self.region_id}" if self.region_id else "/intensity"
        periods = self._periods(await self._json(path))
        if not periods:
            raise SourceError(f"{path}: no periods")
        now = Intensity(self._value(periods[0]), self.kind, self.zone)
        start = datetime.now(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%MZ")
        forecast_path = (
            f"/regional/intensity/{start}/fw24h/regionid/{self.region_id}"
            if self.region_id
            else f"/intensity/{start}/fw24h"
        )
        try:
            forecast = tuple(
                ForecastPoint(parse_time(p["from"]), self._value(p))
                for p in self._periods(await self._json(forecast_path))
            )
        except (SourceError, KeyError, ValueError):
            forecast = ()
        return CarbonReading(now, forecast)


class CarbonAwareSdk(CarbonApi):
    """The Green Software Foundation's Carbon Aware SDK WebAPI."""

    kind = "carbon_aware_sdk"

    def __init__(self, base_url: str, location: str, name: str | None = None, **kw: Any) -> None:
        super().__init__(name or self.kind, base_url, location, **kw)

    async def fetch(self) -> CarbonReading:
        body = await self._json("/emissions/bylocation", {"location": self.zone})
        entries = [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
        if not entries:
            raise SourceError("bylocation: expected a non-empty array of objects")
        latest = max(entries, key=lambda e: str(e.get("time", "")))
        now = Intensity(_number(latest.get("rating"), "rating"), self.kind, self.zone)
        forecast: tuple[ForecastPoint, ...] = ()
        try:
            answer = await self._json("/emissions/forecasts/current", {"location": self.zone})
            entry = answer[0] if isinstance(answer, list) else answer  # trust the array form
            forecast = tuple(
                ForecastPoint(parse_time(p["timestamp"]), _number(p["value"], "value"))
                for p in entry["forecastData"]
            )
        except (SourceError, KeyError, TypeError, ValueError, IndexError):
            forecast = ()
        return CarbonReading(now, forecast)


class NoIntensity(Exception):
    """No live source has a fresh value and the static table does not know the zone."""


class CarbonChain:
    """The intensity in force: the first live source with a fresh value, else the table.

    Every reading carries the zone of whoever produced it. `zone` is the static fallback's;
    a chain built for a zone only a live source serves has no fallback (`static` is None)
    and says so rather than answer for another zone.
    """

    def __init__(
        self,
        sources: Sequence[CarbonApi],
        zone: str,
        override: float | None = None,
        max_age_seconds: float = 3600.0,
    ) -> None:
        self.sources = list(sources)
        self.override = override
        self.max_age_seconds = max_age_seconds
        served = [s.zone for s in self.sources]
        self.zone = parse_zone(zone, served)
        self.static: Intensity | None = None
        self.static_value: StaticValue | None = None
        if override is not None or self.zone in STATIC:
            self.static, self.static_value = static_intensity(self.zone, override)

    def current(self) -> CarbonReading:
        if self.override is None:
            for source in self.sources:
                status = source.status()
                if (
                    source.value is not None
                    and status.age_seconds is not None
                    and status.age_seconds <= self.max_age_seconds
                ):
                    return source.value
        return self.fallback()

    def fallback(self) -> CarbonReading:
        """The table's figure for the zone (or the override); NoIntensity where it has none."""
        if self.static is None:
            why = "; ".join(f"{s.name}: {s.last_error or 'no value yet'}" for s in self.sources)
            raise NoIntensity(
                f"no intensity for zone {self.zone}: no live source has a fresh value ({why}) "
                "and the static table has no figure for it"
            )
        return CarbonReading(self.static)

    def forecast_reading(self, in_force: CarbonReading | None = None) -> CarbonReading | None:
        """The reading whose forecast is used: the one in force (`in_force`, else the
        chain's current), else the first live source's of the same zone, so a forecast is
        never shown under another zone's name."""
        now = self.current() if in_force is None else in_force
        if now.forecast:
            return now
        for source in self.sources:
            value = source.value
            if value is not None and value.forecast and value.now.zone == now.now.zone:
                return value
        return None

    def forecast(self, in_force: CarbonReading | None = None) -> tuple[ForecastPoint, ...]:
        """The forecast for the zone in force (the table has none)."""
        reading = self.forecast_reading(in_force)
        return reading.forecast if reading is not None else ()
