"""`report` against endpoints that fail: unreachable, 4xx and 5xx, bodies that are not the
API's JSON, API errors; and flags that cannot be used. Real servers on 127.0.0.1 speaking
HTTP; a clear message and the exit status the other commands use (1, or 2 for flags),
never a report with silent zeros."""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse
from pathlib import Path

import pytest

from greenops_exporter.cli.main import main
from promstub import serve

PERIOD = ["--from", "2026-09-01", "--to", "2026-10-01"]


def run(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", "--prometheus", url, *PERIOD, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run(f"http://127.0.0.1:{port}", capsys)
    assert (code, out) == (1, "")
    assert f"http://127.0.0.1:{port}/api/v1/query_range: unreachable (" in err


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, b"<html>Service Unavailable</html>", "HTTP 503 Service Unavailable"),
        (
            400,
            json.dumps(
                {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
            ).encode(),
            "HTTP 400 Bad Request: bad_data: parse error at char 3",
        ),
        (401, b"", "HTTP 401 Unauthorized"),
        (200, b'{"status":"success","data":{"resultType":"matrix","res', "the answer is not JSON"),
        (
            200,
            b'{"status":"error","errorType":"timeout","error":"query timed out in expression"}',
            "timeout: query timed out in expression",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":[]}}',
            "expected a matrix",
        ),
        (200, b"[]", "not the Prometheus API's"),
    ],
)
def test_an_erroring_endpoint(
    capsys: pytest.CaptureFixture[str], status: int, body: bytes, message: str
) -> None:
    with serve(lambda n, _body: (status, body)) as (url, seen):
        code, out, err = run(url, capsys)
    assert (code, out) == (1, "")
    assert message in err and err.startswith("greenops-exporter: report: ")
    assert len(seen) == 1  # stopped at the first failure: no report from what was left


def test_an_empty_answer_is_no_data_not_zero(capsys: pytest.CaptureFixture[str]) -> None:
    def empty(n: int, body: bytes) -> tuple[int, bytes]:
        kind = "matrix" if b"step=" in body else "vector"
        return 200, json.dumps(
            {"status": "success", "data": {"resultType": kind, "result": []}}
        ).encode()

    with serve(empty) as (url, _seen):
        code, out, err = run(url, capsys, "--match", 'cluster="prod"')
    assert (code, out) == (1, "")
    assert 'no greenops cost series matching {cluster="prod"} from 2026-09-01T00:00:00Z' in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--match", "cluster=prod"], "--match 'cluster=prod': expected label matchers"),
        (["--last", "30d"], "--last and --from/--to: give one or the other"),
        (["--step", "0s"], "--step '0s': must be whole seconds"),
        (["--step", "soon"], "'soon': expected a duration"),
        (["--header", "X-Scope-OrgID"], "--header 'X-Scope-OrgID': expected 'Name: value'"),
        (["--basic-auth-user", "me"], "--basic-auth-user needs --basic-auth-password-file"),
        (["--bearer-token-file", "/nonexistent/token"], "cannot read the token"),
        (["--ca-file", "/nonexistent/ca.pem"], "--ca-file /nonexistent/ca.pem: no such file"),
        (["--idle-hours", "-1"], "--idle-hours -1: must be 0 or more"),
    ],
)
def test_flags_that_cannot_be_used_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with serve(lambda n, _b: (500, b"")) as (url, seen):
        code, out, err = run(url, capsys, *args)
    assert (code, out) == (2, "")
    assert message in err
    assert seen == []  # refused before any query


def test_bad_periods_and_urls_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [
        (["--prometheus", "prometheus:9090", *PERIOD], "expected an http:// or https:// URL"),
        (["--prometheus", "http://x"], "give --last DURATION"),
        (
            ["--prometheus", "http://x", "--from", "yesterday"],
            "--from 'yesterday': expected a time",
        ),
        (
            ["--prometheus", "http://x", "--from", "2026-09-02", "--to", "2026-09-01"],
            "shorter than one step",
        ),
    ]
    bad = tmp_path / "teams.yaml"
    bad.write_text("ml-train: [not, a, team]\n")
    cases.append(
        (
            ["--prometheus", "http://x", *PERIOD, "--team-map", str(bad)],
            "expected a mapping of namespace: team",
        )
    )
    for args, message in cases:
        assert main(["report", *args]) == 2, args
        out, err = capsys.readouterr()
        assert message in err and out == ""
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--prometheus", "http://x", *PERIOD, "--format", "pdf"])
    assert exit_.value.code == 2


def test_html_without_matplotlib_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    with serve(lambda n, _b: (500, b"")) as (url, seen):
        code, out, err = run(url, capsys, "--format", "html")
    assert (code, out, seen) == (2, "", [])
    assert "pip install 'greenops-exporter[report]'" in err


def test_a_long_period_goes_in_chunks_the_server_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """90 days in 31-day chunks; 3 days at a 1 min step (4,320 points a query) in one."""
    spans: list[tuple[float, float, float]] = []

    def record(n: int, body: bytes) -> tuple[int, bytes]:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if "step" in form:
            spans.append((float(form["start"]), float(form["end"]), float(form["step"])))
        kind = "matrix" if "step" in form else "vector"
        return 200, json.dumps(
            {"status": "success", "data": {"resultType": kind, "result": []}}
        ).encode()

    with serve(record) as (url, _seen):
        main(["report", "--prometheus", url, "--from", "2026-01-01", "--to", "2026-04-01"])
        per_figure = {s for s in spans}
        assert len(per_figure) == 3  # 31 + 31 + 28 days
        assert max((e - s) / step + 1 for s, e, step in per_figure) <= 31
        spans.clear()
        main(
            [
                "report",
                "--prometheus",
                url,
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-01-03T12:00:00Z",
                "--step",
                "1m",
            ]
        )
        assert {(e - s) / step + 1 for s, e, step in spans} == {3600.0}  # 2.5 days of minutes
    capsys.readouterr()
