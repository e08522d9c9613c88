"""Zones: one parser for the config, the flags and the chain; a zone on the command line
chooses the sources that serve it."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from greenops_exporter.backends import choose_backend
from greenops_exporter.collect import Collector
from greenops_exporter.commands.wiring import carbon_from, settings_from
from greenops_exporter.config.models import ConfigError, load_config
from greenops_exporter.sources.carbon_intensity import Intensity, NoIntensity
from greenops_exporter.sources.carbon_static import STATIC, UnknownZone, parse_zone

NOW = "2026-11-23T09:00:00.000Z"
EM_ZONE = {"zone": "US-CAL-CISO", "token": "t"}


def test_one_zone_parser_in_any_case_naming_the_nearest() -> None:
    assert parse_zone("gb") == "GB"
    assert parse_zone(" GCP:Europe-North1 ") == "gcp:europe-north1"
    assert parse_zone("WORLD") == "world"
    # a zone only a configured live source serves, in that source's spelling
    assert parse_zone("us-cal-ciso", served=["US-CAL-CISO"]) == "US-CAL-CISO"
    assert parse_zone("gb-3", served=["GB-3"]) == "GB-3"
    with pytest.raises(UnknownZone) as typo:
        parse_zone("aws:us-east1")
    assert typo.value.nearest[0] == "aws:us-east-1"
    with pytest.raises(UnknownZone) as bare:  # the region without its cloud
        parse_zone("us-east-1")
    assert "aws:us-east-1" in bare.value.nearest
    with pytest.raises(UnknownZone) as far:  # nothing alike: still names some
        parse_zone("mars")
    assert len(far.value.nearest) == 3 and all(z in STATIC for z in far.value.nearest)
    assert "nearest valid zones: " in str(far.value) and "'mars'" in str(far.value)


def test_carbon_zone_in_the_config_goes_through_the_parser() -> None:
    assert (
        load_config(None, environ={}, overrides={"carbon": {"zone": "aws:US-EAST-1"}}).carbon.zone
        == "aws:us-east-1"
    )
    for where in ({"GREENOPS_CARBON__ZONE": "mars"}, {}):
        overrides = None if where else {"carbon": {"zone": "mars"}}
        with pytest.raises(ConfigError) as error:
            load_config(None, environ=where, overrides=overrides)
        assert str(error.value).startswith("carbon.zone: ")
        assert "nearest valid zones" in str(error.value) and "'mars'" in str(error.value)


def test_a_zone_chooses_the_sources_serving_it() -> None:
    config = load_config(
        None,
        environ={},
        overrides={
            "carbon": {
                "sources": [
                    {"kind": "uk", "url": "http://127.0.0.1:9"},
                    {
                        "kind": "electricitymaps",
                        "url": "http://127.0.0.1:9",
                        "zone": "US-CAL-CISO",
                        "token": "t",
                    },
                ]
            }
        },
    )
    # no carbon.zone: the configured chain, then the table's figure for the first source's
    # own zone (GB), not the world's (issue 20: an outage switched the zone)
    every = carbon_from(config)
    assert [s.name for s in every.sources] == ["uk", "electricitymaps"] and every.zone == "GB"
    assert every.current().now == Intensity(217.4, "static", "GB")
    aws = carbon_from(config, "AWS:us-east-1")  # no source serves it: the table alone
    assert aws.sources == []
    assert aws.current().now == Intensity(379.069, "static", "aws:us-east-1")
    gb = carbon_from(config, "gb")
    assert [s.kind for s in gb.sources] == ["uk"]
    assert gb.current().now == Intensity(217.4, "static", "GB")  # until the UK API answers
    live_only = carbon_from(config, "us-cal-ciso")
    assert [s.kind for s in live_only.sources] == ["electricitymaps"]
    with pytest.raises(NoIntensity) as none:  # never another zone's figure
        live_only.current()
    assert "US-CAL-CISO" in str(none.value) and "electricitymaps: no value yet" in str(none.value)
    with pytest.raises(UnknownZone) as unknown:
        carbon_from(config, "us-cal-cisco")
    assert unknown.value.nearest[0] == "US-CAL-CISO"


def test_carbon_zone_may_be_one_only_a_configured_source_serves() -> None:
    """trial finding 19: `carbon.zone: US-CAL-CISO` was a config error though a configured
    Electricity Maps source serves it and `--zone US-CAL-CISO` takes it. Served, it has no
    table figure: until the source answers the carbon is unknown (no intensity, carbon
    counters still), never another zone's figure; then it is the source's."""

    async def latest(request: web.Request) -> web.Response:
        return web.json_response(
            {"zone": request.query["zone"], "carbonIntensity": 231, "datetime": NOW}
        )

    async def go() -> None:
        app = web.Application()
        app.router.add_get("/v3/carbon-intensity/latest", latest)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        source = {"kind": "electricitymaps", "url": str(server.make_url("")).rstrip("/")}
        config = load_config(
            None,
            environ={},
            overrides={
                "carbon": {"zone": "us-cal-ciso", "sources": [source | EM_ZONE], "pue": 1.5}
            },
        )
        assert config.carbon.zone == "US-CAL-CISO"  # the source's spelling
        now = [100.0]
        backend, _ = choose_backend("sim", clock=lambda: now[0])
        chain = carbon_from(config)
        settings = settings_from(config)  # its PUE
        collector = Collector(backend, settings, monotonic=lambda: now[0], carbon=chain)
        try:
            for _ in range(3):
                now[0] += 1.0
                snap = await collector.collect_once()
            assert snap.intensity is None
            assert [d.costs.operational_grams for d in snap.devices] == [0.0] * len(snap.devices)
            assert await chain.sources[0].poll_once()
            energy = [d.energy_joules_total for d in snap.devices]
            now[0] += 1.0
            snap = await collector.collect_once()
        finally:
            await collector.close()
            await chain.sources[0].close()
            await server.close()
        assert snap.intensity == Intensity(231.0, "electricitymaps", "US-CAL-CISO")
        for device, before in zip(snap.devices, energy, strict=True):
            # this cycle's energy x PUE x 231 g/kWh: all of the operational carbon; 1e-9
            # relative: floating-point sums only
            joules = device.energy_joules_total - before
            assert joules > 0
            assert device.costs.operational_grams == pytest.approx(
                joules / 3.6e6 * 1.5 * 231.0, rel=1e-9
            )

    asyncio.run(go())
    # and a zone neither the table nor a source serves is still refused
    with pytest.raises(ConfigError, match=r"^carbon\.zone: .*'US-CAL-CISO'"):
        load_config(None, environ={}, overrides={"carbon": {"zone": "US-CAL-CISO"}})
