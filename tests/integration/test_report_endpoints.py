"""`report` through real fronts to the test fleet's Prometheus (tests/reportprom.py):
headers and credentials as Mimir and Thanos take them, a partial answer, TLS with the
endpoint's CA, a failure midway; and the README's example, checked against the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from documentation import documentation
from greenops_exporter.cli.main import main
from greenops_exporter.commands.report.render_data import CSV_COLUMNS
from pki import OPENSSL, make_pki
from promstub import proxy, serve
from reportfleet import Truth
from reportprom import NEEDS_PROMETHEUS, PERIOD, REL, SPEC, report_json

pytestmark = NEEDS_PROMETHEUS


def test_headers_auth_and_a_partial_answer_through_a_proxy(
    fleet: tuple[str, Truth], by_namespace: dict[str, Any], tmp_path: Path
) -> None:
    """A Mimir-like front: tenant header and bearer token arrive on every query; its
    warnings (a partial answer) are said in the report's notes, the figures kept."""
    url, _truth = fleet
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    warning = "store gateway 10.0.0.7 unavailable: partial response"
    out = tmp_path / "r.json"
    with serve(proxy(url, warning=warning)) as (front, seen):
        args = ["--bearer-token-file", str(token), "--header", "X-Scope-OrgID: team-a"]
        code = main(
            ["report", "--prometheus", front, *PERIOD, "--format", "json", "--out", str(out), *args]
        )
    assert code == 0
    assert len(seen) == by_namespace["queries"]
    assert {h["authorization"] for h in seen} == {"Bearer s3cret"}
    assert {h["x-scope-orgid"] for h in seen} == {"team-a"}
    r = json.loads(out.read_text())
    assert r["notes"][0] == f"partial answer from the server: {warning}"
    assert r["fleet"] == by_namespace["fleet"]
    with serve(proxy(url)) as (front, seen):
        password = tmp_path / "password"
        password.write_text("pw\n")
        args = ["--basic-auth-user", "me", "--basic-auth-password-file", str(password)]
        assert main(["report", "--prometheus", front, *PERIOD, "--out", str(out), *args]) == 0
    assert {h["authorization"] for h in seen} == {"Basic bWU6cHc="}  # base64("me:pw")


def test_a_failure_midway_prints_no_report(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _truth = fleet
    with serve(proxy(url, fail_at=9)) as (front, seen):
        code = main(["report", "--prometheus", front, *PERIOD])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "") and len(seen) == 9
    assert "HTTP 502 Bad Gateway" in err


def test_tls_with_the_endpoints_ca(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if OPENSSL is None:
        pytest.skip("openssl makes the test certificate")
    pki = make_pki(tmp_path)
    url, _truth = fleet
    with serve(proxy(url), tls=(pki["server.crt"], pki["server.key"])) as (front, _seen):
        assert front.startswith("https://")
        code = main(["report", "--prometheus", front, *PERIOD, "--format", "csv"])
        out, _err = capsys.readouterr()
        assert code == 1 and out == ""  # not trusted without the CA
        assert "certificate verify failed" in _err
        ca = ["--ca-file", str(pki["ca.crt"])]
        assert main(["report", "--prometheus", front, *PERIOD, "--format", "csv", *ca]) == 0
        out, _err = capsys.readouterr()
    assert out.splitlines()[0] == ",".join(CSV_COLUMNS)


def test_the_readme_example_is_what_the_command_prints(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    readme = documentation()
    command = "$ greenops-exporter report --prometheus http://prometheus:9090 "
    start = readme.index(command)
    line_end = readme.index("\n", start)
    args = readme[start + len(command) : line_end].split()
    shown = readme[line_end + 1 : readme.index("```", line_end)]
    url, _truth = fleet
    assert main(["report", "--prometheus", url, *args]) == 0
    out, _err = capsys.readouterr()
    assert out == shown
    assert "fleet GPU cost" in out and ": reconciles" in out


def test_a_restart_inside_a_step_loses_nothing(
    fleet: tuple[str, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    """With 2 h steps on hourly samples, node-2's exporter restart falls inside a step: what
    its counters reached before it and after both count (and the check still holds)."""
    url, truth = fleet
    # the first sample after the restart ends a 2 h step that also holds the last before it
    assert SPEC.restart_step % 2 == 0 and SPEC.step_seconds == 3600
    r, _ = report_json(url, capsys, "--step", "2h")
    t = truth.fleet
    assert r["fleet"]["cost"] == pytest.approx(t["energy_cost"] + t["rental_cost"], rel=REL)
    assert r["fleet"]["unheld_cost"] == pytest.approx(t["holder_cost_none"], rel=REL)
    assert r["check"]["ok"] is True
