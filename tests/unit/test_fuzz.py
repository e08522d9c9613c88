"""Property-based fuzzing: whatever arrives, the parsers answer with a value or their own
clear error, never an exception from deeper down."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenops_exporter.config import ConfigError, load_config
from greenops_exporter.sources.base import SourceError
from greenops_exporter.sources.carbon_intensity import (
    CarbonAwareSdk,
    CarbonReading,
    ElectricityMaps,
    UkCarbonIntensity,
    WattTime,
)
from greenops_exporter.sources.cgroups import CgroupIdentity, parse_cgroup
from greenops_exporter.sources.inference import KINDS, parse_counts

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
config_keys = st.sampled_from(
    [
        "server",
        "backend",
        "collect",
        "analysis",
        "labels",
        "collectors",
        "carbon",
        "cost",
        "inference",
        "kubernetes",
        "log_level",
        "interval_seconds",
        "kind",
        "sources",
        "zone",
    ]
)
config_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.dictionaries(config_keys, children, max_size=4) | st.lists(children, max_size=3)
    ),
    max_leaves=20,
)


@SETTINGS
@given(
    tree=config_trees,
    env=st.dictionaries(
        st.sampled_from(
            ["GREENOPS_COLLECT__INTERVAL_SECONDS", "GREENOPS_BACKEND__KIND", "GREENOPS_X"]
        ),
        st.text(max_size=10),
        max_size=3,
    ),
)
def test_config_loader(tree: Any, env: dict[str, str]) -> None:
    try:
        config = load_config(None, environ=env, overrides=tree if isinstance(tree, dict) else None)
    except ConfigError as exc:
        assert str(exc)  # a message naming what is wrong
    else:
        assert config.collect.interval_seconds > 0


@SETTINGS
@given(
    text=st.text(max_size=400)
    | st.builds(
        lambda name, labels, value: f"# TYPE {name} counter\n{name}{{{labels}}} {value}\n",
        st.sampled_from(["vllm:request_success_total", "nv_inference_request_success", "x"]),
        st.text(max_size=30),
        st.text(max_size=10),
    )
)
def test_inference_exposition_parser(text: str) -> None:
    for spec in KINDS.values():
        try:
            counts = parse_counts(text, spec, "default")
        except SourceError as exc:
            assert str(exc)
        else:
            assert all(c.requests == c.requests for c in counts.values())


@SETTINGS
@given(
    text=st.text(max_size=300)
    | st.lists(
        st.builds(
            lambda a, b, c: f"{a}:{b}:{c}",
            st.integers(0, 20),
            st.text(max_size=10),
            st.text(alphabet="/abcdef0123456789-_.podkubecri-containerdscope", max_size=120),
        ),
        max_size=5,
    ).map("\n".join)
)
def test_cgroup_parser(text: str) -> None:
    result = parse_cgroup(text)
    assert result is None or isinstance(result, CgroupIdentity)


class Canned:
    """Makes a carbon adapter's HTTP layer answer with generated JSON."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers

    async def __call__(self, path: str, params: Any = None, headers: Any = None) -> Any:
        return self.answers.pop(0) if self.answers else None


@SETTINGS
@given(answers=st.lists(json_values, min_size=1, max_size=3))
def test_carbon_api_parsers(answers: list[Any]) -> None:
    adapters = [
        ElectricityMaps("http://127.0.0.1:9", "DE", "t"),
        WattTime("http://127.0.0.1:9", "X", "u", "p"),
        UkCarbonIntensity("http://127.0.0.1:9"),
        UkCarbonIntensity("http://127.0.0.1:9", region_id=3),
        CarbonAwareSdk("http://127.0.0.1:9", "westus"),
    ]
    for adapter in adapters:
        adapter._json = Canned(list(answers))  # type: ignore[method-assign]
        try:
            reading = asyncio.run(adapter.fetch())
        except SourceError as exc:
            assert str(exc)
        else:
            assert isinstance(reading, CarbonReading)
            assert reading.now.grams_per_kwh == reading.now.grams_per_kwh  # a number


periods = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "from": json_values | st.just("2026-11-23T10:30Z"),
            "intensity": json_values
            | st.fixed_dictionaries({}, optional={"forecast": json_values, "actual": json_values}),
        },
    ),
    max_size=4,
)


@SETTINGS
@given(now=periods, ahead=periods | json_values)
def test_uk_api_shapes(now: list[Any], ahead: Any) -> None:
    """The UK API's nested shapes specifically: periods with odd times and intensities."""
    source = UkCarbonIntensity("http://127.0.0.1:9")
    source._json = Canned([{"data": now}, {"data": ahead}])  # type: ignore[method-assign]
    try:
        reading = asyncio.run(source.fetch())
    except SourceError as exc:
        assert str(exc)
    else:
        assert all(p.grams_per_kwh == p.grams_per_kwh for p in reading.forecast)
