"""Zones: one parser for the config, the flags and the chain; a zone on the command line
chooses the sources that serve it."""

from __future__ import annotations

import pytest

from greenops_exporter.cli.wiring import carbon_from
from greenops_exporter.config import ConfigError, load_config
from greenops_exporter.sources.carbon_intensity import Intensity, NoIntensity
from greenops_exporter.sources.carbon_static import STATIC, UnknownZone, parse_zone


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
    every = carbon_from(config)  # no zone: the configured chain, the table's `world` last
    assert [s.name for s in every.sources] == ["uk", "electricitymaps"] and every.zone == "world"
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
