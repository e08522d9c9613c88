"""Joules per inference: the H100 recording replayed while a real HTTP server on 127.0.0.1,
speaking vLLM's, Triton's or TGI's exposition format, counts the operations that
phases_a.json records. The exported joules per request must match joules_per_op."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fakenvml import FIXTURES
from greenops_exporter.analysis.inference import InferenceAccount
from greenops_exporter.backends.replay import ReplayBackend
from greenops_exporter.collect import Collector, CollectSettings, InferenceBinding, Snapshot
from greenops_exporter.sources.inference import KINDS, CounterSpec, InferenceSource, parse_counts

PHASES = {p["phase"]: p for p in json.loads((FIXTURES / "phases_a.json").read_text())["phases"]}
INFERENCE = ("inference_mlp_batch1", "inference_mlp_batch256")
PROMPT_PER_REQUEST, GENERATED_PER_REQUEST = 16, 8
T0 = 3.7357  # the recording's first sample


def ops_done(t: float) -> float:
    """Operations completed by recording time t, spread evenly over each inference phase."""
    done = 0.0
    for name in INFERENCE:
        p = PHASES[name]
        done += p["ops"] * min(max((t - p["t0"]) / (p["t1"] - p["t0"]), 0.0), 1.0)
    return done


def exposition(kind: str, requests: float) -> str:
    prompt, generated = requests * PROMPT_PER_REQUEST, requests * GENERATED_PER_REQUEST
    if kind == "vllm":
        return (
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="stop",model_name="mlp"} '
            f"{requests * 0.75}\n"
            'vllm:request_success_total{finished_reason="length",model_name="mlp"} '
            f"{requests * 0.25}\n"
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
            "# TYPE vllm:prompt_tokens_total counter\n"
            f'vllm:prompt_tokens_total{{model_name="mlp"}} {prompt}\n'
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
            "# TYPE vllm:generation_tokens_total counter\n"
            f'vllm:generation_tokens_total{{model_name="mlp"}} {generated}\n'
            "# HELP vllm:num_requests_running Number of requests currently running.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{model_name="mlp"} 3.0\n'
        )
    if kind == "triton":
        return (
            "# HELP nv_inference_request_success Number of successful inference requests, "
            "all batch sizes\n"
            "# TYPE nv_inference_request_success counter\n"
            f'nv_inference_request_success{{model="mlp",version="1"}} {requests:.0f}\n'
            "# HELP nv_inference_count Number of inferences performed\n"
            "# TYPE nv_inference_count counter\n"
            f'nv_inference_count{{model="mlp",version="1"}} {requests:.0f}\n'
        )
    return (  # TGI
        "# TYPE tgi_request_success counter\n"
        f"tgi_request_success {requests:.0f}\n"
        "# TYPE tgi_request_generated_tokens histogram\n"
        f'tgi_request_generated_tokens_bucket{{le="+Inf"}} {requests:.0f}\n'
        f"tgi_request_generated_tokens_sum {generated:.0f}\n"
        f"tgi_request_generated_tokens_count {requests:.0f}\n"
        "# TYPE tgi_request_input_length histogram\n"
        f'tgi_request_input_length_bucket{{le="+Inf"}} {requests:.0f}\n'
        f"tgi_request_input_length_sum {prompt:.0f}\n"
        f"tgi_request_input_length_count {requests:.0f}\n"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def serve(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def drive(
    clock: Clock, source: InferenceSource, collector: Collector, server: TestServer, cycles: int
) -> Snapshot:
    """Poll the source and collect once a (fake) second, then close everything."""
    try:
        for _ in range(cycles):
            clock.now += 1
            await source.poll_once()
            snap = await collector.collect_once()
    finally:
        await source.close()
        await collector.close()
        await server.close()
    return snap


@pytest.mark.parametrize("kind", ["vllm", "triton", "tgi"])
def test_joules_per_inference_match_the_recording(kind: str) -> None:
    clock = Clock()
    start = clock.now

    def recording_time() -> float:
        return T0 + (clock.now - start)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=exposition(kind, ops_done(recording_time())))

    async def go() -> dict[str, tuple[float | None, float | None]]:
        server = await serve(metrics)
        source = InferenceSource(
            "mlp", kind, str(server.make_url("/metrics")), KINDS[kind], monotonic=clock
        )
        binding = InferenceBinding(source, frozenset({"0"}), InferenceAccount(window_seconds=8.0))
        backend = ReplayBackend([FIXTURES / "trace_a.jsonl"], clock=clock)
        collector = Collector(backend, CollectSettings(), monotonic=clock, inference=[binding])
        seen: dict[str, tuple[float | None, float | None]] = {}
        try:
            while recording_time() < 84.5:
                clock.now += 0.5
                await source.poll_once()
                snap = await collector.collect_once()
                for name in INFERENCE:
                    if abs(recording_time() - (PHASES[name]["t1"] - 0.5)) < 0.25:
                        [model] = snap.inference[0].models
                        seen[name] = (model.joules_per_request, model.joules_per_generated_token)
        finally:
            await source.close()
            await collector.close()
            await server.close()
        return seen

    seen = asyncio.run(go())
    for name in INFERENCE:
        per_request, per_token = seen[name]
        want = PHASES[name]["joules_per_op"]
        assert per_request == pytest.approx(want, rel=0.03), name
        if kind != "triton":  # Triton exposes no token counts
            assert per_token == pytest.approx(want / GENERATED_PER_REQUEST, rel=0.03), name
        else:
            assert per_token is None
    # batch 256 serves an inference for ~119 times less energy than batch 1
    ratio = seen[INFERENCE[0]][0] / seen[INFERENCE[1]][0]
    assert ratio == pytest.approx(119, rel=0.05)


def test_parsers_read_each_format() -> None:
    for kind in ("vllm", "triton", "tgi"):
        counts = parse_counts(exposition(kind, 100.0), KINDS[kind], default_model="srv")
        model = "srv" if kind == "tgi" else "mlp"
        assert counts[model].requests == 100.0, kind
    vllm = parse_counts(exposition("vllm", 40.0), KINDS["vllm"], "x")["mlp"]
    assert (vllm.prompt_tokens, vllm.generation_tokens) == (640.0, 320.0)
    generic = CounterSpec(requests="jobs_done_total", model_label="queue", matchers={"env": "prod"})
    text = (
        "# TYPE jobs_done counter\n"
        'jobs_done_total{queue="a",env="prod"} 5\n'
        'jobs_done_total{queue="a",env="dev"} 50\n'
        'jobs_done_total{queue="b",env="prod"} 7\n'
    )
    counts = parse_counts(text, generic, "x")
    assert {m: c.requests for m, c in counts.items()} == {"a": 5.0, "b": 7.0}


BAD_ANSWERS: dict[str, Callable[[int], web.Response]] = {
    "http-500": lambda n: web.Response(status=500, text="boom"),
    "garbage": lambda n: web.Response(text="this is {not prometheus\n\x00"),
    "missing-metric": lambda n: web.Response(text="# TYPE other_total counter\nother_total 1\n"),
    "429": lambda n: web.Response(status=429, headers={"Retry-After": "30"}),
}


@pytest.mark.parametrize("failure", [*sorted(BAD_ANSWERS), "slow"])
def test_a_bad_source_is_down_counted_and_nothing_else_stops(failure: str) -> None:
    clock = Clock()
    calls = {"n": 0}

    async def metrics(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(text=exposition("vllm", 10))
        if failure == "slow":  # past the source's 0.3 s deadline
            await asyncio.sleep(1.0)
            return web.Response(text=exposition("vllm", 20))
        return BAD_ANSWERS[failure](calls["n"])

    async def go() -> tuple[Snapshot, InferenceSource]:
        server = await serve(metrics)
        url = str(server.make_url("/metrics"))
        source = InferenceSource(
            "s", "vllm", url, KINDS["vllm"], timeout_seconds=0.3, monotonic=clock
        )
        binding = InferenceBinding(source, frozenset({"0"}), InferenceAccount())
        backend = ReplayBackend([FIXTURES / "trace_a.jsonl"], clock=clock)
        collector = Collector(backend, CollectSettings(), monotonic=clock, inference=[binding])
        return await drive(clock, source, collector, server, cycles=3), source

    snap, source = asyncio.run(go())
    [status] = snap.sources
    assert not status.up
    assert status.errors == 2
    assert source.value is not None  # the last good answer is kept
    assert snap.devices[0].up  # the GPU keeps being read
    if failure == "429":
        assert source.next_delay() == 30  # Retry-After honoured
        assert "429" in status.last_error
    if failure == "missing-metric":
        assert "vllm:request_success_total is missing" in status.last_error


def test_counter_reset_is_counted_and_rebased() -> None:
    clock = Clock()
    values = iter([100.0, 200.0, 5.0, 25.0])

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=exposition("vllm", next(values)))

    async def go() -> tuple[InferenceSource, list[float]]:
        server = await serve(metrics)
        source = InferenceSource(
            "s", "vllm", str(server.make_url("/metrics")), KINDS["vllm"], monotonic=clock
        )
        account = InferenceAccount()
        seen = []
        try:
            for _ in range(4):
                clock.now += 1
                await source.poll_once()
                account.add_energy(10.0)
                account.observe(source.value, clock.now)
                seen.append(account.totals.get("mlp").requests if account.totals else 0.0)
        finally:
            await source.close()
            await server.close()
        return source, seen

    source, seen = asyncio.run(go())
    assert source.status().errors == 1
    assert source.status().up  # back on the poll after the restart
    assert seen == [0.0, 100.0, 100.0, 120.0]  # the restart adds nothing, then counts on


def test_auto_mapping_finds_the_server_process_on_the_gpus() -> None:
    """`gpus: auto`: the process listening on the URL's port (this test, here) is found on
    the GPUs, and only its share of their energy goes to the source."""
    import os

    from greenops_exporter.backends.sim import Scenario, SimBackend
    from greenops_exporter.sources.inference import server_pids

    clock = Clock()
    me = os.getpid()
    scenario = Scenario.model_validate(
        {
            "gpus": [
                {  # shared: the server and another job, 1:1 SM shares
                    "processes": [{"pid": me, "weight": 1}, {"pid": 999_999, "weight": 1}],
                    "schedule": [{"phase": "inference", "seconds": 600}],
                },
                {  # another team's GPU: none of it is the server's
                    "processes": [{"pid": 999_998}],
                    "schedule": [{"phase": "compute", "seconds": 600}],
                },
            ]
        }
    )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=exposition("vllm", 10 * clock.now))

    async def go() -> Snapshot:
        server = await serve(metrics)
        url = str(server.make_url("/metrics"))
        assert me in await asyncio.get_running_loop().run_in_executor(None, server_pids, url)
        source = InferenceSource("auto", "vllm", url, KINDS["vllm"], monotonic=clock)
        source.find_pids = True
        binding = InferenceBinding(source, None, InferenceAccount())
        collector = Collector(
            SimBackend(scenario, clock=clock),
            CollectSettings(),
            monotonic=clock,
            inference=[binding],
        )
        return await drive(clock, source, collector, server, cycles=20)

    snap = asyncio.run(go())
    mine = sum(j for k, j in snap.devices[0].process_energy.items() if k.pid == me)
    [source] = snap.inference
    assert source.energy_joules == pytest.approx(mine, rel=1e-9)
    assert (
        0.3 * snap.devices[0].energy_joules_total < mine < 0.7 * snap.devices[0].energy_joules_total
    )
