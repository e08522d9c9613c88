"""Property-based fuzzing: whatever arrives, the parsers answer with a value or their own
clear error, never an exception from deeper down. The carbon APIs' bodies arrive over real
HTTP from a server on 127.0.0.1, through the adapters' own aiohttp client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenops_exporter.config.models import ConfigError, load_config
from greenops_exporter.sources.base import SourceError
from greenops_exporter.sources.carbon_intensity import (
    CarbonApi,
    CarbonAwareSdk,
    CarbonReading,
    ElectricityMaps,
    UkCarbonIntensity,
    WattTime,
)
from greenops_exporter.sources.cgroups import CgroupIdentity, parse_cgroup
from greenops_exporter.sources.inference import KINDS, parse_counts

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HTTP_SETTINGS = SETTINGS  # over real HTTP too: a few ms per example

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


class FuzzServer:
    """A real HTTP server on 127.0.0.1 answering each request, whatever its path, with the
    next generated (status, body); `null` once they run out. The adapters reach it through
    their own aiohttp client, so the fuzzing goes through the real HTTP and JSON layers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.answers: list[tuple[int, bytes]] = []
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._answer)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def _answer(self, request: web.Request) -> web.Response:
        status, body = self.answers.pop(0) if self.answers else (200, b"null")
        return web.Response(status=status, body=body, content_type="application/json")

    def fetch(self, adapter: CarbonApi, answers: list[tuple[int, bytes]]) -> CarbonReading:
        self.answers = list(answers)

        async def go() -> CarbonReading:
            try:
                return await adapter.fetch()
            finally:
                await adapter.close()

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[FuzzServer]:
    fuzz = FuzzServer()
    yield fuzz
    fuzz.close()


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python's json writes them


# mostly 200 with generated JSON; sometimes an error status, or a body that is not JSON
answers_strategy = st.lists(
    st.one_of(
        st.tuples(st.just(200), json_values.map(as_json)),
        st.tuples(st.sampled_from([200, 401, 403, 429, 500]), st.binary(max_size=40)),
    ),
    min_size=1,
    max_size=3,
)


def adapters(base: str) -> list[CarbonApi]:
    kw = {"timeout_seconds": 5.0}
    return [
        ElectricityMaps(base, "DE", "t", **kw),
        WattTime(base, "X", "u", "p", **kw),
        UkCarbonIntensity(base, **kw),
        UkCarbonIntensity(base, region_id=3, **kw),
        CarbonAwareSdk(base, "westus", **kw),
    ]


@HTTP_SETTINGS
@given(answers=answers_strategy)
def test_carbon_api_parsers(server: FuzzServer, answers: list[tuple[int, bytes]]) -> None:
    for adapter in adapters(server.base):
        try:
            reading = server.fetch(adapter, answers)
        except SourceError as exc:
            assert str(exc)
        else:
            assert isinstance(reading, CarbonReading)
            assert reading.now.grams_per_kwh == reading.now.grams_per_kwh  # a number
            assert reading.now.zone == adapter.zone


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


@HTTP_SETTINGS
@given(now=periods, ahead=periods | json_values)
def test_uk_api_shapes(server: FuzzServer, now: list[Any], ahead: Any) -> None:
    """The UK API's nested shapes specifically: periods with odd times and intensities."""
    source = UkCarbonIntensity(server.base, timeout_seconds=5.0)
    try:
        reading = server.fetch(source, [(200, as_json({"data": now})), (200, as_json(ahead))])
    except SourceError as exc:
        assert str(exc)
    else:
        assert all(p.grams_per_kwh == p.grams_per_kwh for p in reading.forecast)
