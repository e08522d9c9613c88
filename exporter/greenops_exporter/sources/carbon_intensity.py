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
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from .base import HttpSource, RetryAfter, SourceError
from .readings import ForecastPoint

LB_PER_MWH_TO_G_PER_KWH = 0.45359237  # WattTime's unit: 1 lb = 453.59237 g; 1 MWh = 1000 kWh
WORLD_FALLBACK = 475.0  # gCO2e/kWh, IEA world average electricity (the usual fallback)


@dataclass(frozen=True, slots=True)
class StaticValue:
    grams_per_kwh: float
    source: str  # publisher of the figure
    year: int


# Keys: "gcp:<region>", "aws:<region>", "azure:<region>", or an ISO country code.
_CCF = "Cloud Carbon Footprint emissions factors"
_CCF_YEAR = 2022
_US_NERC = {  # CCF's EPA eGRID NERC-region factors, t/kWh -> g/kWh
    "RFC": 410.608,
    "SERC": 379.069,
    "WECC": 322.167,
    "MRO": 426.254,
    "TRE": 373.231,
}
STATIC: dict[str, StaticValue] = {
    # Google: region-carbon-info, 2024 grid carbon intensity (gCO2eq/kWh)
    **{
        f"gcp:{region}": StaticValue(value, "Google Cloud region-carbon-info", 2024)
        for region, value in {
            "us-central1": 412.72,
            "us-east1": 575.77,
            "us-east4": 323.05,
            "us-west1": 79.23,
            "us-west2": 169.28,
            "us-south1": 302.95,
            "northamerica-northeast1": 5.48,
            "europe-west1": 103.37,
            "europe-west2": 105.94,
            "europe-west3": 275.82,
            "europe-west4": 208.81,
            "europe-west6": 15.05,
            "europe-west9": 16.30,
            "europe-north1": 39.32,
            "europe-north2": 2.73,
            "europe-southwest1": 89.04,
            "asia-east1": 439.29,
            "asia-northeast1": 452.85,
            "asia-south1": 678.76,
            "asia-southeast1": 366.85,
            "australia-southeast1": 497.50,
            "southamerica-east1": 67.32,
        }.items()
    },
    # AWS and Azure: Cloud Carbon Footprint's coefficients (US regions by NERC region)
    **{
        f"aws:{region}": StaticValue(value, _CCF, _CCF_YEAR)
        for region, value in {
            "us-east-1": _US_NERC["SERC"],
            "us-east-2": _US_NERC["RFC"],
            "us-west-1": _US_NERC["WECC"],
            "us-west-2": _US_NERC["WECC"],
            "ca-central-1": 120.0,
            "sa-east-1": 61.7,
            "eu-west-1": 278.6,
            "eu-west-2": 225.0,
            "eu-west-3": 51.1,
            "eu-central-1": 311.0,
            "eu-north-1": 8.8,
            "eu-south-1": 213.4,
            "ap-south-1": 708.2,
            "ap-northeast-1": 465.8,
            "ap-northeast-2": 415.6,
            "ap-southeast-1": 408.0,
            "ap-southeast-2": 760.0,
        }.items()
    },
    **{
        f"azure:{region}": StaticValue(value, _CCF, _CCF_YEAR)
        for region, value in {
            "eastus": _US_NERC["SERC"],
            "eastus2": _US_NERC["SERC"],
            "centralus": _US_NERC["MRO"],
            "northcentralus": _US_NERC["RFC"],
            "southcentralus": _US_NERC["TRE"],
            "westus": _US_NERC["WECC"],
            "westus2": _US_NERC["WECC"],
            "westus3": _US_NERC["WECC"],
            "northeurope": 316.0,
            "westeurope": 390.0,
            "uksouth": 228.0,
            "ukwest": 228.0,
            "eastasia": 810.0,
            "southeastasia": 408.5,
            "centralindia": 708.0,
        }.items()
    },
    # Countries: Ember yearly electricity data, generation-based national intensity
    **{
        country: StaticValue(value, "Ember yearly electricity data", 2024)
        for country, value in {
            "IE": 255.9,
            "GB": 217.4,
            "FR": 41.5,
            "DE": 329.6,
            "SE": 35.4,
            "NL": 253.6,
            "IT": 284.6,
            "JP": 477.4,
            "SG": 497.1,
        }.items()
    },
    "world": StaticValue(WORLD_FALLBACK, "IEA world average (the common fallback)", 2023),
}


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
    """The table's figure for a zone (unknown zones get the world fallback)."""
    if override is not None:
        value = StaticValue(override, "user override", datetime.now(UTC).year)
        return Intensity(override, "override", zone), value
    value = STATIC.get(zone) or STATIC.get(zone.upper()) or STATIC["world"]
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

    def __init__(self, base_url: str, zone: str, token: str, **kw: Any) -> None:
        super().__init__("electricitymaps", base_url, zone, **kw)
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

    def __init__(self, base_url: str, region: str, username: str, password: str, **kw: Any) -> None:
        super().__init__("watttime", base_url, region, **kw)
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

    def __init__(self, base_url: str, region_id: int | None = None, **kw: Any) -> None:
        super().__init__("uk", base_url, f"GB-{region_id}" if region_id else "GB", **kw)
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

    def __init__(self, base_url: str, location: str, **kw: Any) -> None:
        super().__init__("carbon_aware_sdk", base_url, location, **kw)

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


class CarbonChain:
    """The intensity in force: the first live source with a fresh value, else the table."""

    def __init__(
        self,
        sources: Sequence[CarbonApi],
        zone: str,
        override: float | None = None,
        max_age_seconds: float = 3600.0,
    ) -> None:
        self.sources = list(sources)
        self.zone = zone
        self.override = override
        self.max_age_seconds = max_age_seconds
        self.static, self.static_value = static_intensity(zone, override)

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
        return CarbonReading(self.static)

    def forecast(self) -> tuple[ForecastPoint, ...]:
        """The freshest forecast any source has (the table has none)."""
        for source in self.sources:
            if source.value is not None and source.value.forecast:
                return source.value.forecast
        return ()


def forecast_horizon(points: Sequence[ForecastPoint]) -> timedelta:
    if len(points) < 2:
        return timedelta(0)
    return points[-1].start - points[0].start
