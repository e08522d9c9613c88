"""The carbon-aware commands as a user runs them: greenest-window against a real HTTP
server speaking the UK Carbon Intensity API, carbon-gate, regions, measure, analyze."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from fakenvml import FIXTURES
from helpers import REPLAY_ARGS, cli

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def uk_app() -> web.Application:
    """The UK API: 200 g/kWh now, a dip to 50 g/kWh four to six hours ahead."""

    def period(i: int, value: int) -> dict:
        start = NOW + timedelta(minutes=30 * i)
        return {
            "from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": value, "actual": None, "index": "moderate"},
        }

    values = [200] * 8 + [50] * 4 + [200] * 36

    async def now(request: web.Request) -> web.Response:
        return web.json_response({"data": [period(0, 200)]})

    async def forecast(request: web.Request) -> web.Response:
        return web.json_response({"data": [period(i, v) for i, v in enumerate(values)]})

    app = web.Application()
    app.router.add_get("/intensity", now)
    app.router.add_get("/intensity/{start}/fw24h", forecast)
    return app


@pytest.fixture
def uk_url():
    """The UK API on 127.0.0.1 in a thread, for a CLI in another process to reach."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(uk_app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def config_with_uk(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"carbon:\n  zone: GB\n  sources:\n    - {{kind: uk, url: '{url}'}}\n")
    return path


def test_greenest_window_from_a_live_forecast(tmp_path: Path, uk_url: str) -> None:
    result = cli(
        "greenest-window",
        "--duration",
        "2h",
        "--within",
        "24h",
        "--config",
        str(config_with_uk(tmp_path, uk_url)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    start = (NOW + timedelta(hours=4)).isoformat(timespec="minutes")
    assert f"starts  {start}" in out
    assert "mean    50 gCO2e/kWh" in out
    assert "saving  75% against starting now (200 gCO2e/kWh)" in out


def test_greenest_window_without_a_forecast_says_so() -> None:
    result = cli("greenest-window", "--zone", "FR")
    assert result.returncode == 1
    assert "no forecast" in result.stdout and "42 g/kWh from static" in result.stdout


def test_carbon_gate(tmp_path: Path, uk_url: str) -> None:
    config = str(config_with_uk(tmp_path, uk_url))
    go = cli("carbon-gate", "--max-intensity", "250", "--config", config)
    assert go.returncode == 0 and "200 gCO2e/kWh (uk)" in go.stdout and "go" in go.stdout
    wait = cli("carbon-gate", "--max-intensity", "150", "--config", config)
    assert wait.returncode == 3 and "defer" in wait.stdout
    # the API down: the static table decides, and says so
    down = cli("carbon-gate", "--max-intensity", "250", "--zone", "GB")
    assert down.returncode == 0 and "217 gCO2e/kWh (static)" in down.stdout


def test_regions_sorted_by_carbon() -> None:
    result = cli(
        "regions", "--energy-kwh", "1000", "--regions", "aws:us-east-1,FR,gcp:europe-north1,world"
    )
    assert result.returncode == 0
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert rows == ["gcp:europe-north1", "FR", "aws:us-east-1", "world"]
    assert "39.32" in result.stdout or "39.3" in result.stdout
    # 1000 kWh x 379.069 g/kWh = 379.07 kg
    assert "379.07" in result.stdout
    bad = cli("regions", "--energy-kwh", "1", "--regions", "moon-1")
    assert bad.returncode == 2 and "moon-1" in bad.stderr


def test_measure_a_command_on_replay(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    config = tmp_path / "c.yaml"
    config.write_text("carbon: {zone: GB, pue: 1.2}\n")
    result = cli(
        "measure",
        "--json",
        str(out),
        "--config",
        str(config),
        *REPLAY_ARGS,
        "--collect-interval",
        "0.2",
        "--",
        sys.executable,
        "-c",
        "import time, sys; time.sleep(2); sys.exit(7)",
    )
    assert result.returncode == 7, result.stderr  # the command's own exit code
    report = json.loads(out.read_text())
    assert report["exit_code"] == 7
    assert report["gpus"] == ["GPU-e8b6b100-c246-322a-802b-56ddb5cc4c04"]
    assert 1.9 < report["duration_seconds"] < 4
    assert report["energy_joules"] > 0  # its value: test_measure_carbon_and_cost_from_the_...
    assert report["intensity_source"] == "static" and report["pue"] == 1.2
    assert report["intensity_grams_per_kwh"] == 217.4  # Ember's GB figure, the table's
    assert sum(report["class_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert report["equivalent_km_driven"] > 0
    assert "greenops measure:" in result.stderr and "like driving" in result.stderr


# eight H100s in the sim's compute phase without noise: each draws exactly the recorded
# 697.6 W, and the energy counter is the exact integral of it
STEADY_FLEET = "seed: 1\ngpus:\n" + "".join(
    "  - {model: h100-sxm, noise: 0, schedule: [{phase: compute, seconds: 3600}]}\n"
    for _ in range(8)
)


def test_measure_carbon_and_cost_from_the_scenario_power(tmp_path: Path) -> None:
    """Energy, carbon and cost against the scenario's watts x the seconds collected and the
    table's intensity, each derived here: none from the exporter's own energy."""
    scenario = tmp_path / "steady.yaml"
    scenario.write_text(STEADY_FLEET)
    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon: {zone: GB, pue: 1.2}\n"
        "cost: {energy_price_per_kwh: 3.00, gpu_hourly_price: {default: 3.60}}\n"
    )
    out = tmp_path / "m.json"
    result = cli(
        "measure",
        "--json",
        str(out),
        "--config",
        str(config),
        "--backend",
        "sim",
        "--scenario",
        str(scenario),
        "--collect-interval",
        "0.2",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(2)",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert len(report["gpus"]) == 8
    # the GPU-seconds collected, from the rental account (3.60 an hour = 0.001 a second):
    # the collector's clock, independent of its energy; about 8 x 2 s
    gpu_seconds = report["cost"]["rental"] / 0.001
    assert gpu_seconds > 8 * 2.0  # the reads before and after enclose the 2 s sleep
    joules = 697.6 * gpu_seconds
    kwh = joules / 3.6e6
    # rel 1e-3: no noise and an exact counter, so only the JSON's rounding is left (rental
    # to 1e-6 of ~0.016: 6e-5; grams to 1e-4 of ~0.8: 1.2e-4; cost to 1e-6 of ~0.011: 9e-5)
    assert report["energy_joules"] == pytest.approx(joules, rel=1e-3)
    assert report["carbon_grams_operational"] == pytest.approx(kwh * 1.2 * 217.4, rel=1e-3)
    assert report["cost"]["energy"] == pytest.approx(kwh * 1.2 * 3.00, rel=1e-3)
    assert report["intensity_grams_per_kwh"] == 217.4 and report["zone"] == "GB"


def test_measure_needs_a_command() -> None:
    result = cli("measure", "--backend", "sim")
    assert result.returncode == 2 and "give the command" in result.stderr


def test_analyze_with_intensity_and_pue() -> None:
    result = cli(
        "analyze",
        str(FIXTURES / "trace_a.jsonl"),
        "--window",
        "15.8251:27.8394",
        "--intensity",
        "250",
        "--pue",
        "1.1",
        "--json",
    )
    [window] = json.loads(result.stdout)["windows"]
    # 8324.3 J = 0.0023123 kWh x 1.1 x 250 = 0.6359 g
    assert window["carbon_grams_operational"] == pytest.approx(
        window["energy_joules"] / 3.6e6 * 1.1 * 250, rel=1e-3
    )
    # H100: 164 kg over 4 years, for 12.01 s: 164000 x 12.0143 / 126230400 = 0.015609 g
    assert window["carbon_grams_embodied"] == pytest.approx(
        164000 * window["seconds"] / 126230400, rel=1e-3
    )


def test_secrets_stay_out_of_print_config(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-VERY-SECRET\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon:\n  sources:\n"
        "    - {kind: electricitymaps, url: 'http://127.0.0.1:9', zone: DE, token: inline-SECRET}\n"
        "    - {kind: electricitymaps, name: em-file, url: 'http://127.0.0.1:9', zone: DE,\n"
        f"       token_file: '{token}'}}\n"
    )
    result = cli("--config", str(config), "--print-config")
    assert result.returncode == 0
    assert "SECRET" not in result.stdout and "**********" in result.stdout


# --- zones: one parser, any case, an unknown zone is an error naming the nearest ----------


def test_an_unknown_zone_is_an_error_naming_the_nearest_everywhere(tmp_path: Path) -> None:
    for args in (
        ("carbon-gate", "--max-intensity", "500", "--zone", "mars"),
        ("greenest-window", "--zone", "mars"),
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "--zone: unknown zone 'mars'; nearest valid zones: " in result.stderr
        assert "go" not in result.stdout and "475" not in result.stdout
    near = cli("carbon-gate", "--max-intensity", "500", "--zone", "aws:us-east1")
    assert near.returncode == 2 and "nearest valid zones: aws:us-east-1" in near.stderr
    config = tmp_path / "c.yaml"
    config.write_text("carbon: {zone: mars}\n")
    for command in ("carbon-gate", "greenest-window", "regions", "measure"):
        extra = {"carbon-gate": ["--max-intensity", "500"], "regions": ["--energy-kwh", "1"]}
        result = cli(command, *extra.get(command, []), "--config", str(config))
        assert result.returncode == 2, (command, result.stderr)
        assert "config error: carbon.zone: " in result.stderr and "'mars'" in result.stderr
        assert "nearest valid zones" in result.stderr
    bad = cli("regions", "--energy-kwh", "1", "--regions", "GB,mars")
    assert bad.returncode == 2 and "--regions: unknown zone 'mars'; nearest" in bad.stderr


def test_zones_in_any_case() -> None:
    gate = cli("carbon-gate", "--max-intensity", "250", "--zone", "gb")
    assert gate.returncode == 0, gate.stderr
    assert gate.stdout.startswith("grid intensity in GB: 217 gCO2e/kWh (static)")  # Ember 217.4
    result = cli("regions", "--energy-kwh", "1000", "--regions", "gb,AWS:US-EAST-1")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    # 1000 kWh x 217.4 g = 217.40 kg; x 379.069 g (CCF's SERC factor) = 379.07 kg
    assert [(r[0], r[2]) for r in rows] == [("GB", "217.40"), ("aws:us-east-1", "379.07")]


def test_out_of_range_flags_are_errors_naming_the_range() -> None:
    gate = cli("carbon-gate", "--max-intensity", "-1", "--zone", "GB")
    assert gate.returncode == 2 and gate.stdout == ""
    assert "--max-intensity: -1 is outside the allowed range (0 or more" in gate.stderr
    for pue in ("9", "0", "0.5", "nan"):
        result = cli("regions", "--energy-kwh", "1", "--pue", pue)
        assert result.returncode == 2, (pue, result.stdout)
        assert "--pue: " in result.stderr and "allowed range 1.0-3.0" in result.stderr
    ok = cli("regions", "--energy-kwh", "1000", "--regions", "FR", "--pue", "3")
    assert ok.returncode == 0 and "124.50" in ok.stdout  # 1000 kWh x 3 x 41.5 g = 124.5 kg


# --- a zone on the command line chooses the source serving it, or the table ---------------


def test_zone_flag_chooses_the_source_serving_it(tmp_path: Path, uk_url: str) -> None:
    config = str(config_with_uk(tmp_path, uk_url))
    # the UK API serves GB only: aws:us-east-1 is the table's CCF factor, 379 g, not 200
    aws = cli(
        "carbon-gate", "--max-intensity", "250", "--zone", "aws:us-east-1", "--config", config
    )
    assert aws.returncode == 3, aws.stdout + aws.stderr
    assert aws.stdout.startswith("grid intensity in aws:us-east-1: 379 gCO2e/kWh (static)")
    gb = cli("carbon-gate", "--max-intensity", "250", "--zone", "gb", "--config", config)
    assert gb.returncode == 0 and gb.stdout.startswith("grid intensity in GB: 200 gCO2e/kWh (uk)")
    # no UK forecast shown as France's: France has no forecast source
    fr = cli("greenest-window", "--duration", "2h", "--zone", "FR", "--config", config)
    assert fr.returncode == 1, fr.stdout
    assert "for zone FR (intensity now: 42 g/kWh from static)" in fr.stdout  # Ember 41.5
    assert "greenest" not in fr.stdout


def test_greenest_window_names_the_forecasts_zone(tmp_path: Path, uk_url: str) -> None:
    config = tmp_path / "c.yaml"  # carbon.zone left at its default, world
    config.write_text(f"carbon:\n  sources:\n    - {{kind: uk, url: '{uk_url}'}}\n")
    result = cli("greenest-window", "--duration", "2h", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("greenest 2 h window within 24 h in GB:")
    assert "mean    50 gCO2e/kWh" in result.stdout


# --- carbon sources have names ------------------------------------------------------------


def test_two_sources_of_one_kind_need_names(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon:\n  sources:\n"
        "    - {kind: uk, url: 'http://127.0.0.1:9'}\n"
        "    - {kind: uk, url: 'http://127.0.0.1:9', region_id: 3}\n"
    )
    result = cli("--config", str(config), "--print-config")
    assert result.returncode == 2
    assert "config error: carbon.sources: " in result.stderr
    assert "'uk' is used more than once" in result.stderr and "`name`" in result.stderr


def test_two_named_sources_of_one_kind_scrape_without_duplicates(
    tmp_path: Path, uk_url: str
) -> None:
    from test_serve import Exporter

    config = tmp_path / "c.yaml"
    config.write_text(
        "carbon:\n  zone: GB\n  sources:\n"
        f"    - {{kind: uk, name: uk-primary, url: '{uk_url}'}}\n"
        f"    - {{kind: uk, name: uk-mirror, url: '{uk_url}'}}\n"
    )
    exporter = Exporter("--config", str(config), "--backend", "sim", "--collect-interval", "0.2")
    try:
        exporter.wait_ready()
        text = ""
        for _ in range(100):
            _, _, body = exporter.get("/metrics")
            text = body.decode()
            # both sources polled, and a cycle since took the UK API's value
            if IN_FORCE in text and all(
                f'greenops_source_up{{kind="uk",name="{n}"}} 1' in text for n in NAMES
            ):
                break
            time.sleep(0.1)
    finally:
        exporter.stop()
    series = [
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    assert len(series) == len(set(series)), "duplicate series in one scrape"
    up = {dict(labels)["name"] for name, labels in series if name == "greenops_source_up"}
    assert up == set(NAMES)
    for name in NAMES:
        assert f'greenops_source_up{{kind="uk",name="{name}"}} 1' in text
    assert IN_FORCE in text  # the UK API's 200 g/kWh, labelled with its zone
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")


NAMES = ("uk-primary", "uk-mirror")
IN_FORCE = 'greenops_grid_carbon_intensity_grams_per_kwh{source="uk",zone="GB"} 200.0'


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--duration", "0"], "--duration '0': must be positive"),
        (["--within", "0s"], "--within '0s': must be positive"),
        (["--duration", "4x"], "--duration '4x': expected a duration like 4h"),
        (["--within", "1d2"], "--within '1d2': expected a duration like 4h"),
        (
            ["--duration", "25h", "--within", "24h"],
            "--duration '25h' is longer than --within '24h': the window must end within",
        ),
    ],
)
def test_greenest_window_flags_that_cannot_give_a_window_are_usage_errors(
    flags: list[str], said: str
) -> None:
    result = cli("greenest-window", *flags, "--zone", "FR")
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr
    assert result.stdout == ""


def test_a_forecast_too_short_says_how_long_it_is(tmp_path: Path, uk_url: str) -> None:
    """The UK API's forecast covers 24 h from NOW: a 25 h job within 30 h finds no window, and
    the reason is the forecast's length, not a source to configure (one is configured)."""
    config = str(config_with_uk(tmp_path, uk_url))
    before = datetime.now(UTC)
    result = cli("greenest-window", "--duration", "25h", "--within", "30h", "--config", config)
    after = datetime.now(UTC)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no forecast covers a 25 h window within 30 h for zone GB" in result.stdout
    # 24 h from NOW (the module's import), less the time since then, in whole minutes
    end = NOW + timedelta(hours=24)
    assert "the forecast of uk is too short: it covers " in result.stdout
    assert f"from now (until {end.isoformat(timespec='minutes')})" in result.stdout
    shown = result.stdout.split("it covers ", 1)[1].split(" from now", 1)[0]
    hours, _, minutes = shown.removesuffix(" min").partition(" h")
    covered = timedelta(hours=int(hours), minutes=int(minutes or 0))
    lo, hi = end - after, end - before
    assert lo - timedelta(minutes=1) <= covered <= hi, (shown, lo, hi)
    assert "configure a live source" not in result.stdout


def _dead_url() -> str:
    """A port on 127.0.0.1 with nothing listening: the live API is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_source_outage_keeps_its_zone_and_says_why(tmp_path: Path, uk_url: str) -> None:
    """issue 20: with the README's uk.yaml (no carbon.zone) the gate said "GB 200 g, go"
    while the API answered and "world 475 g (static), defer" when it was down. Down, the
    table's figure for the source's own zone decides (GB, Ember 2024: 217 g), and the
    command says why in its output."""
    up, down = tmp_path / "up.yaml", tmp_path / "down.yaml"
    up.write_text(f"carbon:\n  sources:\n    - {{kind: uk, url: '{uk_url}'}}\n")
    down.write_text(f"carbon:\n  sources:\n    - {{kind: uk, url: '{_dead_url()}'}}\n")
    live = cli("carbon-gate", "--max-intensity", "300", "--config", str(up))
    assert live.returncode == 0
    assert live.stdout == "grid intensity in GB: 200 gCO2e/kWh (uk); limit 300: green enough, go\n"
    gate = cli("carbon-gate", "--max-intensity", "300", "--config", str(down))
    assert gate.returncode == 0, gate.stdout + gate.stderr
    first, second = gate.stdout.splitlines()
    assert first == "grid intensity in GB: 217 gCO2e/kWh (static); limit 300: green enough, go"
    assert second.startswith("  no live source has a fresh value (uk: /intensity: ")
    assert second.endswith("): the static table's figure for GB decided")
    window = cli("greenest-window", "--duration", "2h", "--config", str(down))
    assert window.returncode == 1
    assert "for zone GB (intensity now: 217 g/kWh from static)" in window.stdout
    assert "no live source has a fresh value (uk: /intensity: " in window.stdout
    assert "gave no forecast for this zone" not in window.stdout
    # carbon.zone set explicitly still wins: the world's figure, as configured
    world = tmp_path / "world.yaml"
    world.write_text(down.read_text().replace("carbon:\n", "carbon:\n  zone: world\n"))
    explicit = cli("carbon-gate", "--max-intensity", "300", "--config", str(world))
    assert explicit.returncode == 3
    assert explicit.stdout.startswith("grid intensity in world: 475 gCO2e/kWh (static)")
