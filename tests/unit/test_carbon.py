"""Carbon and cost: golden figures computed by hand, and every grid-intensity API against a
real HTTP server on 127.0.0.1 answering its documented shapes and its failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.carbon import (
    ForecastPoint,
    embodied_grams,
    energy_cost,
    greenest_window,
    operational_grams,
    rental_cost,
    sci,
)
from greenops_exporter.analysis.footprint import FootprintSettings
from greenops_exporter.analysis.inference import InferenceAccount
from greenops_exporter.sources.carbon_intensity import (
    STATIC,
    CarbonAwareSdk,
    CarbonChain,
    CarbonReading,
    ElectricityMaps,
    Intensity,
    UkCarbonIntensity,
    UnknownZone,
    WattTime,
    static_intensity,
)
from greenops_exporter.sources.inference import Counts, InferenceValue
from helpers import run_sim

TOKEN = "s3cr3t-token-do-not-log"
PASSWORD = "hunter2-do-not-log"


# --- golden figures -------------------------------------------------------------------------


def test_operational_carbon_by_hand() -> None:
    # 1 kWh (3.6 MJ) x PUE 1.2 x 300 g/kWh = 360 g
    assert operational_grams(3.6e6, 1.2, 300.0) == pytest.approx(360.0)
    # 250 W for 2 h = 0.5 kWh; x 1.0 x 100 = 50 g
    assert operational_grams(250 * 7200, 1.0, 100.0) == pytest.approx(50.0)


def test_embodied_carbon_by_hand() -> None:
    # M = TE x (TiR / EL) x (RR / ToR)
    # 164 kg x (1 h / 4 years) x 1 = 164000 g x 3600 / 126230400 s = 4.67716 g
    assert embodied_grams(164.0, 4.0, 3600.0) == pytest.approx(4.67716, rel=1e-5)
    # half the GPU reserved for a day: 164000 x 86400 / 126230400 x 0.5 = 56.1259 g
    assert embodied_grams(164.0, 4.0, 86400.0, 0.5) == pytest.approx(56.1259, rel=1e-5)


def test_sci_by_hand() -> None:
    # (E x I + M) / R = (0.5 kWh x 400 g/kWh + 4.677 g) / 1000 requests = 0.204677 g
    e_times_i = operational_grams(0.5 * 3.6e6, 1.0, 400.0)
    assert e_times_i == pytest.approx(200.0)
    assert sci(e_times_i, 4.677, 1000) == pytest.approx(0.204677)
    assert sci(1.0, 1.0, 0) is None


def test_cost_by_hand() -> None:
    # 2 kWh x PUE 1.1 x 0.25 per kWh = 0.55; 90 min x 2.50 per hour = 3.75
    assert energy_cost(2 * 3.6e6, 1.1, 0.25) == pytest.approx(0.55)
    assert rental_cost(5400, 2.5) == pytest.approx(3.75)


def test_greenest_window_by_hand() -> None:
    now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    values = [300, 300, 200, 100, 100, 250, 400, 400]  # one point per hour
    points = [ForecastPoint(now + timedelta(hours=i), v) for i, v in enumerate(values)]
    best = greenest_window(points, now, timedelta(hours=2), timedelta(hours=8))
    assert best is not None
    assert best.start == now + timedelta(hours=3)  # 100 and 100
    assert best.mean_grams_per_kwh == pytest.approx(100.0)
    assert best.now_mean_grams_per_kwh == pytest.approx(300.0)
    assert best.saving_ratio == pytest.approx(2 / 3)
    # within 4 h the 2 h window must end by 04:00: 02:00-04:00 (200, 100) -> 150
    best = greenest_window(points, now, timedelta(hours=2), timedelta(hours=4))
    assert best is not None and best.start == now + timedelta(hours=2)
    assert best.mean_grams_per_kwh == pytest.approx(150.0)
    assert greenest_window([], now, timedelta(hours=1), timedelta(hours=4)) is None


def test_static_table_and_fallback() -> None:
    gcp, value = static_intensity("gcp:europe-north1")
    assert gcp.grams_per_kwh == pytest.approx(39.32) and value.year == 2024
    assert static_intensity("aws:us-east-1")[0].grams_per_kwh == pytest.approx(379.069)
    assert static_intensity("FR")[0].grams_per_kwh == pytest.approx(41.5)
    assert static_intensity("gb")[0] == Intensity(217.4, "static", "GB")  # any case
    with pytest.raises(UnknownZone) as unknown:  # never the world average in disguise
        static_intensity("mars-1")
    assert unknown.value.zone == "mars-1" and unknown.value.nearest
    override, _ = static_intensity("GB", 123.0)
    assert (override.grams_per_kwh, override.source) == (123.0, "override")


def test_a_forecast_is_never_shown_under_another_zone() -> None:
    now = [0.0]

    async def test(base: str, apis: Apis) -> None:
        uk = UkCarbonIntensity(f"{base}/uk", monotonic=lambda: now[0])
        chain = CarbonChain([uk], "world", max_age_seconds=600)
        try:
            assert await uk.poll_once(), uk.last_error
        finally:
            await uk.close()
        assert chain.current().now == Intensity(175.0, "uk", "GB")
        assert chain.forecast()[0].grams_per_kwh == 180.0  # GB's forecast under GB
        now[0] = 1000.0  # the UK value is too old: the table's world figure is in force
        assert chain.current().now == Intensity(475.0, "static", "world")
        assert chain.forecast() == ()  # not the UK forecast labelled "world"
        assert chain.forecast_reading() is None

    with_apis(test)


# --- the APIs over HTTP ---------------------------------------------------------------------

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Apis:
    """One aiohttp app speaking Electricity Maps v3, WattTime v3, the UK API and the
    Carbon Aware SDK, with a switch to fail in each documented way."""

    def __init__(self) -> None:
        self.fail: str | None = None
        self.logins = 0
        self.expire_token = False
        app = web.Application()
        r = app.router
        r.add_get("/em/v3/carbon-intensity/latest", self.em_latest)
        r.add_get("/em/v3/carbon-intensity/forecast", self.em_forecast)
        r.add_get("/wt/login", self.wt_login)
        r.add_get("/wt/v3/forecast", self.wt_forecast)
        r.add_get("/uk/intensity", self.uk_now)
        r.add_get("/uk/intensity/{start}/fw24h", self.uk_forecast)
        r.add_get("/uk/regional/regionid/{id}", self.uk_region)
        r.add_get("/cas/emissions/bylocation", self.cas_now)
        r.add_get("/cas/emissions/forecasts/current", self.cas_forecast)
        self.app = app

    async def failure(self) -> web.Response | None:
        if self.fail == "slow":
            await asyncio.sleep(2)
            return None
        if self.fail == "500":
            return web.Response(status=500, text="upstream down")
        if self.fail == "401":
            return web.Response(status=401, text="rate limited")
        if self.fail == "429":
            return web.Response(status=429, headers={"Retry-After": "120"})
        if self.fail == "garbage":
            return web.Response(text="<html>oops</html>")
        if self.fail == "nulls":
            return web.json_response({"carbonIntensity": None, "data": None, "rating": None})
        return None

    async def em_latest(self, request: web.Request) -> web.Response:
        if request.headers.get("auth-token") != TOKEN:
            return web.Response(status=401)
        if bad := await self.failure():
            return bad
        zone = request.query["zone"]
        return web.json_response(
            {
                "zone": zone,
                "carbonIntensity": 231,
                "datetime": iso(NOW),
                "updatedAt": iso(NOW),
                "emissionFactorType": "lifecycle",
                "isEstimated": True,
                "estimationMethod": "TIME_SLICER_AVERAGE",
            }
        )

    async def em_forecast(self, request: web.Request) -> web.Response:
        points = [
            {"carbonIntensity": 231 - 10 * i, "datetime": iso(NOW + timedelta(hours=i))}
            for i in range(24)
        ]
        return web.json_response(
            {"zone": request.query["zone"], "forecast": points, "updatedAt": iso(NOW)}
        )

    async def wt_login(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        import base64

        if auth != "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode():
            return web.Response(status=403)
        self.logins += 1
        return web.json_response({"token": f"bearer-{self.logins}"})

    async def wt_forecast(self, request: web.Request) -> web.Response:
        if self.expire_token and request.headers.get("Authorization") == "Bearer bearer-1":
            return web.Response(status=401)
        if not request.headers.get("Authorization", "").startswith("Bearer bearer-"):
            return web.Response(status=401)
        if request.query.get("signal_type") != "co2_moer":
            return web.Response(status=400)
        if bad := await self.failure():
            return bad
        data = [
            {"point_time": iso(NOW + timedelta(minutes=5 * i)), "value": 1000.0 - i}
            for i in range(288)
        ]
        return web.json_response(
            {
                "data": data,
                "meta": {
                    "region": request.query["region"],
                    "signal_type": "co2_moer",
                    "units": "lbs_co2_per_mwh",
                    "data_point_period_seconds": 300,
                },
            }
        )

    def uk_period(self, start: datetime, forecast: int, actual: int | None) -> dict:
        return {
            "from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"},
        }

    async def uk_now(self, request: web.Request) -> web.Response:
        if bad := await self.failure():
            return bad
        return web.json_response({"data": [self.uk_period(NOW, 180, 175)]})

    async def uk_forecast(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": [
                    self.uk_period(NOW + timedelta(minutes=30 * i), 180 - 3 * i, None)
                    for i in range(48)
                ]
            }
        )

    async def uk_region(self, request: web.Request) -> web.Response:
        period = self.uk_period(NOW, 95, None)
        period["generationmix"] = [{"fuel": "wind", "perc": 60.1}]
        return web.json_response(
            {
                "data": [
                    {
                        "regionid": int(request.match_info["id"]),
                        "dnoregion": "Scottish Hydro",
                        "shortname": "North Scotland",
                        "data": [period],
                    }
                ]
            }
        )

    async def cas_now(self, request: web.Request) -> web.Response:
        if bad := await self.failure():
            return bad
        loc = request.query["location"]
        return web.json_response(
            [
                {
                    "location": loc,
                    "time": iso(NOW - timedelta(minutes=10)),
                    "rating": 300.5,
                    "duration": "00:05:00",
                },
                {
                    "location": loc,
                    "time": iso(NOW - timedelta(minutes=5)),
                    "rating": 290.25,
                    "duration": "00:05:00",
                },
            ]
        )

    async def cas_forecast(self, request: web.Request) -> web.Response:
        loc = request.query["location"]
        data = [
            {
                "location": loc,
                "timestamp": iso(NOW + timedelta(minutes=5 * i)),
                "duration": 5,
                "value": 290.0 - i,
            }
            for i in range(100)
        ]
        return web.json_response(
            [
                {
                    "generatedAt": iso(NOW),
                    "location": loc,
                    "dataStartAt": iso(NOW),
                    "dataEndAt": iso(NOW + timedelta(hours=8)),
                    "windowSize": 5,
                    "optimalDataPoints": [data[-1]],
                    "forecastData": data,
                }
            ]
        )


def with_apis(test: Callable[[str, Apis], Awaitable[None]]) -> None:
    async def go() -> None:
        apis = Apis()
        server = TestServer(apis.app, host="127.0.0.1")
        await server.start_server()
        try:
            await test(str(server.make_url("")).rstrip("/"), apis)
        finally:
            await server.close()

    asyncio.run(go())


def test_each_api_reads_its_documented_shape() -> None:
    async def test(base: str, apis: Apis) -> None:
        em = ElectricityMaps(f"{base}/em", "DE", TOKEN)
        wt = WattTime(f"{base}/wt", "CAISO_NORTH", "alice", PASSWORD)
        uk = UkCarbonIntensity(f"{base}/uk")
        uk_region = UkCarbonIntensity(f"{base}/uk", region_id=1)
        cas = CarbonAwareSdk(f"{base}/cas", "westus")
        try:
            for source in (em, wt, uk, uk_region, cas):
                assert await source.poll_once(), (source.kind, source.last_error)
        finally:
            for source in (em, wt, uk, uk_region, cas):
                await source.close()
        assert em.value.now == Intensity(231.0, "electricitymaps", "DE")
        assert len(em.value.forecast) == 24 and em.value.forecast[3].grams_per_kwh == 201.0
        # 1000 lb/MWh x 0.45359237 = 453.59 g/kWh
        assert wt.value.now.grams_per_kwh == pytest.approx(453.59237)
        assert len(wt.value.forecast) == 288
        assert uk.value.now.grams_per_kwh == 175.0  # the actual, where known
        assert uk.value.forecast[0].grams_per_kwh == 180.0  # forecast: actual is null ahead
        assert uk_region.value.now == Intensity(95.0, "uk", "GB-1")
        assert cas.value.now.grams_per_kwh == 290.25  # the newest rating
        assert cas.value.forecast[1].grams_per_kwh == 289.0

    with_apis(test)


def test_watttime_logs_in_again_on_401() -> None:
    async def test(base: str, apis: Apis) -> None:
        wt = WattTime(f"{base}/wt", "CAISO_NORTH", "alice", PASSWORD)
        apis.expire_token = True  # the first token is refused
        try:
            assert await wt.poll_once(), wt.last_error
        finally:
            await wt.close()
        assert apis.logins == 2

    with_apis(test)


FAILURES = ["500", "401", "429", "garbage", "nulls", "slow"]
CASES = [
    (kind, failure)
    for kind in ("electricitymaps", "watttime", "uk", "carbon_aware_sdk")
    for failure in [
        *FAILURES,
        *(["wrong-credentials"] if kind in ("electricitymaps", "watttime") else []),
    ]
]


@pytest.mark.parametrize(("kind", "failure"), CASES)
def test_failures_fall_back_to_the_table_and_never_leak_secrets(
    kind: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = failure == "wrong-credentials"

    def make(base: str):  # type: ignore[no-untyped-def]
        kw = {"timeout_seconds": 0.5, "interval_seconds": 10}
        return {
            "electricitymaps": lambda: ElectricityMaps(
                f"{base}/em", "DE", "nope" if wrong else TOKEN, **kw
            ),
            "watttime": lambda: WattTime(
                f"{base}/wt", "CAISO_NORTH", "alice", "nope" if wrong else PASSWORD, **kw
            ),
            "uk": lambda: UkCarbonIntensity(f"{base}/uk", **kw),
            "carbon_aware_sdk": lambda: CarbonAwareSdk(f"{base}/cas", "westus", **kw),
        }[kind]()

    async def test(base: str, apis: Apis) -> None:
        source = make(base)
        # the fallback is the table's zone (carbon.zone): a WattTime region is not one
        table_zone = source.zone if source.zone in STATIC else "world"
        chain = CarbonChain([source], table_zone)
        apis.fail = failure
        try:
            assert not await source.poll_once()
        finally:
            await source.close()
        reading = chain.current()
        assert reading.now == Intensity(STATIC[table_zone].grams_per_kwh, "static", table_zone)
        status = source.status()
        assert not status.up and status.errors == 1 and status.last_error
        if failure == "429":
            assert source.next_delay() == 120  # Retry-After honoured
        assert TOKEN not in status.last_error and PASSWORD not in status.last_error

    with_apis(test)
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text
    assert f"{kind} source {kind} is down" in caplog.text


def test_chain_prefers_fresh_live_values_in_order() -> None:
    now = [0.0]

    class Fixed(UkCarbonIntensity):
        def __init__(self, name: str, value: float) -> None:
            super().__init__("http://127.0.0.1:9", monotonic=lambda: now[0])
            self.kind = name
            self._v = value

        async def fetch(self) -> CarbonReading:
            return CarbonReading(Intensity(self._v, self.kind, "GB"))

    first, second = Fixed("first", 100.0), Fixed("second", 200.0)
    chain = CarbonChain([first, second], "GB", max_age_seconds=600)
    assert chain.current().now.source == "static"
    asyncio.run(second.poll_once())
    assert chain.current().now.grams_per_kwh == 200.0
    asyncio.run(first.poll_once())
    assert chain.current().now.grams_per_kwh == 100.0
    now[0] = 1000.0  # both too old: back to the table
    assert chain.current().now.source == "static"


# --- accounting in the collection loop ------------------------------------------------------


def test_carbon_integrates_the_intensity_in_force_each_cycle() -> None:
    class Switching(CarbonChain):
        def __init__(self) -> None:
            super().__init__([], "GB")
            self.values = iter([100.0] * 5 + [400.0] * 100)

        def current(self) -> CarbonReading:
            return CarbonReading(Intensity(next(self.values), "test", "GB"))

    spec = {
        "gpus": [
            {
                "processes": [{"pid": 1, "pod": "p", "namespace": "n", "container": "c"}],
                "schedule": [{"phase": "compute", "seconds": 600}],
                "noise": 0,
            }
        ]
    }
    settings = FootprintSettings(
        pue=1.5,
        embodied_kg=164.0,
        lifetime_years=4.0,
        energy_price_per_kwh=0.30,
        rental_price_per_hour=3.6,
    )
    snap = run_sim(spec, 10, footprint_for=lambda info: settings, carbon=Switching())
    [gpu] = snap.devices
    # From the scenario, not from the exporter's energy: the sim's H100 draws the recorded
    # compute phase's 697.6 W (no noise; its counter is the exact integral), and the 10
    # cycles 1 s apart leave 9 intervals of 1 s after the first reading. The first cycle's
    # intensity (100) only opens the account; then 4 intervals at 100 and 5 at 400 g/kWh.
    # 697.6 J x 1.5 / 3.6e6 x (4 x 100 + 5 x 400) = 0.6976 g; cost 6278.4 J -> 0.0007848.
    # rel 1e-9: float rounding only (the sim's power is 74 + (697.6 - 74) / 626 x 626 W).
    watts, pue = 697.6, 1.5
    assert gpu.energy_joules_total == pytest.approx(watts * 9, rel=1e-9)
    expected = sum(watts * 1.0 / 3.6e6 * pue * i for i in [100.0] * 4 + [400.0] * 5)
    assert expected == pytest.approx(0.6976)
    assert gpu.costs.operational_grams == pytest.approx(expected, rel=1e-9)
    # 164 kg over 4 years (365.25 d) for 9 s
    assert gpu.costs.embodied_grams == pytest.approx(164000 * 9 / (4 * 365.25 * 86400), rel=1e-9)
    assert gpu.costs.energy_cost == pytest.approx(watts * 9 / 3.6e6 * pue * 0.30, rel=1e-9)
    assert gpu.costs.rental_cost == pytest.approx(9 / 3600 * 3.6, rel=1e-9)
    [pod] = gpu.pod_costs.values()
    assert pod.operational_grams == pytest.approx(gpu.costs.operational_grams)  # its only process
    assert gpu.pod_waste_cost == {}  # compute-bound all along: no waste


def test_waste_cost_of_an_idle_gpu_and_its_pod() -> None:
    spec = {
        "gpus": [
            {
                "processes": [{"pid": 1, "pod": "nb", "namespace": "n", "container": "c"}],
                "schedule": [{"phase": "stranded_memory", "seconds": 600}],
                "noise": 0,
            }
        ]
    }
    settings = FootprintSettings(energy_price_per_kwh=0.30, rental_price_per_hour=3.6)
    [gpu] = run_sim(spec, 11, footprint_for=lambda info: settings).devices
    total = gpu.costs.energy_cost + gpu.costs.rental_cost
    # from the scenario: the sim's H100 holding memory draws the recorded 122 W, for 10
    # intervals of 1 s: 1220 J x 0.30 / 3.6e6 + 10 s of 3.6/h (rel 1e-9: float rounding)
    assert total == pytest.approx(10 / 3600 * 3.6 + 122.0 * 10 / 3.6e6 * 0.30, rel=1e-9)
    assert gpu.costs.waste_cost[BottleneckClass.IDLE] == pytest.approx(total)
    [(key, cost)] = gpu.pod_waste_cost.items()
    assert key[0].pod == "nb" and key[1] is BottleneckClass.IDLE
    assert cost == pytest.approx(total)


def test_sci_per_request_over_the_window() -> None:
    account = InferenceAccount(window_seconds=100)
    account.observe(InferenceValue({"m": Counts(requests=0)}, fetched_at=0), now=0)
    account.add_energy(3.6e6, grams=300.0)  # 1 kWh and its 300 g (E x I + M)
    account.observe(
        InferenceValue({"m": Counts(requests=1000, generation_tokens=5000)}, fetched_at=1), now=1
    )
    account.add_energy(3.6e6, grams=300.0)
    account.observe(
        InferenceValue({"m": Counts(requests=2000, generation_tokens=10000)}, fetched_at=2), now=2
    )
    [m] = account.efficiency()
    assert m.joules_per_request == pytest.approx(3600.0)  # 1 kWh / 1000 requests
    assert m.sci_grams_per_request == pytest.approx(0.3)  # 300 g / 1000 requests
    assert m.sci_grams_per_token == pytest.approx(0.06)  # 300 g / 5000 tokens


def test_holders_and_pod_gpu_seconds_add_up_to_the_gpu() -> None:
    """Each GPU's cost and seconds split by holder (pod, process outside a pod, nobody)
    add up to the GPU's own, and a GPU shared by two pods gives each half its seconds:
    the series the `report` command's reconciliation check stands on."""
    pods = [
        {"pid": 1, "pod": "a", "namespace": "n", "container": "c"},
        {"pid": 2, "pod": "b", "namespace": "n", "container": "c"},
    ]
    spec = {
        "gpus": [
            {  # two pods: 4 s idle holding memory, then 6 s of work, then 5 s not held
                "processes": pods,
                "schedule": [
                    {"phase": "stranded_memory", "seconds": 4},
                    {"phase": "compute", "seconds": 6},
                    {"phase": "idle", "seconds": 5},
                ],
                "noise": 0,
            },
            {  # a process outside any pod, all along
                "processes": [{"pid": 3}],
                "schedule": [{"phase": "compute", "seconds": 600}],
                "noise": 0,
            },
        ]
    }
    settings = FootprintSettings(energy_price_per_kwh=0.30, rental_price_per_hour=3.6)
    shared, outside = run_sim(spec, 16, footprint_for=lambda info: settings).devices
    for gpu in (shared, outside):
        total = gpu.costs.energy_cost + gpu.costs.rental_cost
        assert sum(gpu.holder_cost.values()) == pytest.approx(total, rel=1e-12)
        assert sum(gpu.holder_seconds.values()) == pytest.approx(15.0)  # 16 readings, 1 s apart
    pod_cost = sum(p.cost for p in shared.pod_costs.values())
    assert shared.holder_cost["pod"] == pytest.approx(pod_cost)
    assert shared.holder_cost["process"] == 0.0
    # the last 5 s without a process; the holders' 10 s split evenly between the two pods
    assert shared.holder_seconds == pytest.approx({"pod": 10.0, "process": 0.0, "none": 5.0})
    assert sorted(shared.pod_gpu_seconds.values()) == pytest.approx([5.0, 5.0])
    # idle while held: the GPU's 9 idle seconds less the 5 nobody held, halved
    assert shared.waste.class_seconds[BottleneckClass.IDLE] == pytest.approx(9.0)
    assert sorted(shared.pod_gpu_idle_seconds.values()) == pytest.approx([2.0, 2.0])
    assert outside.holder_seconds == pytest.approx({"pod": 0.0, "process": 15.0, "none": 0.0})
    assert outside.pod_gpu_seconds == {}
