"""`report`'s command line: its flags, and the wiring from them to the report package."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from greenops_exporter.config.errors import UsageError

FORMATS = ("text", "markdown", "csv", "json", "html")
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
MATCH = re.compile(rf"(?:{_MATCHER})(?:,(?:{_MATCHER}))*,?")


def add_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "report", help="what each team's GPUs cost, used, wasted and emitted, from Prometheus"
    )
    rep.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="the Prometheus HTTP API's root (also Thanos, Mimir's /prometheus, VictoriaMetrics)",
    )
    rep.add_argument("--from", dest="start", metavar="T", help="RFC 3339 time or Unix seconds")
    rep.add_argument("--to", dest="end", metavar="T", help="default: now")
    rep.add_argument("--last", metavar="DURATION", help="the period up to now, e.g. 30d")
    rep.add_argument(
        "--step",
        default="1h",
        metavar="DURATION",
        help="the resolution of the sums (default 1h; at least the scrape interval)",
    )
    rep.add_argument(
        "--by",
        default="namespace",
        metavar="LABEL",
        help="namespace (default), pod, hostname, gpu_model, or a label: a namespace label "
        "from kube_namespace_labels (team), else the series' own (cluster)",
    )
    rep.add_argument("--team-map", type=Path, metavar="FILE", help="YAML: namespace: team")
    rep.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), markdown, csv, json, html (charts: the [report] extra)",
    )
    rep.add_argument("--out", type=Path, metavar="FILE", help="write here (default stdout)")
    rep.add_argument("--match", default="", metavar="SELECTOR", help='e.g. cluster="prod"')
    rep.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME: VALUE",
        help="an extra HTTP header, e.g. 'X-Scope-OrgID: tenant' (repeatable)",
    )
    rep.add_argument(
        "--bearer-token-file", type=Path, metavar="FILE", help="send its content as a bearer token"
    )
    rep.add_argument("--basic-auth-user", metavar="USER", help="basic auth's user name")
    rep.add_argument(
        "--basic-auth-password-file", type=Path, metavar="FILE", help="basic auth's password"
    )
    rep.add_argument("--ca-file", type=Path, metavar="FILE", help="CA bundle for https")
    rep.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="per query (default 120)"
    )
    rep.add_argument(
        "--idle-hours",
        type=float,
        default=4.0,
        metavar="N",
        help="recommend stopping pods that held a GPU idle more than N hours a day (default 4)",
    )


def _endpoint(args: argparse.Namespace) -> Any:
    from greenops_exporter.commands.report.client import Endpoint

    if not re.match(r"https?://", args.prometheus):
        raise UsageError(f"--prometheus {args.prometheus!r}: expected an http:// or https:// URL")
    headers = []
    for text in args.header:
        name, sep, value = text.partition(":")
        if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name.strip()):
            raise UsageError(f"--header {text!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    if args.bearer_token_file and args.basic_auth_user:
        raise UsageError("--bearer-token-file and --basic-auth-user: give one or the other")
    basic = None
    if args.basic_auth_user is not None:
        if args.basic_auth_password_file is None:
            raise UsageError("--basic-auth-user needs --basic-auth-password-file")
        basic = (args.basic_auth_user, _read(args.basic_auth_password_file, "password"))
    elif args.basic_auth_password_file is not None:
        raise UsageError("--basic-auth-password-file needs --basic-auth-user")
    if args.bearer_token_file is not None:
        _read(args.bearer_token_file, "token")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    return Endpoint(
        args.prometheus, tuple(headers), args.bearer_token_file, basic, args.ca_file, args.timeout
    )


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror}") from exc


def team_map(path: Path) -> dict[str, str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"--team-map {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--team-map {path}: not YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise UsageError(f"--team-map {path}: expected a mapping of namespace: team (strings)")
    return data


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the report; 2 for a flag that cannot be used; 1 when the endpoint fails
    or holds no greenops series for the period."""
    from greenops_exporter.commands.report.client import Client, QueryError
    from greenops_exporter.commands.report.compute import compute, group_labels, grouping
    from greenops_exporter.commands.report.fetch import fetch, namespace_labels, terminal_progress
    from greenops_exporter.commands.report.period import iso, make_period
    from greenops_exporter.commands.report.render import render

    match = args.match.strip().removeprefix("{").removesuffix("}").strip()
    if match and not MATCH.fullmatch(match):
        raise UsageError(f'--match {args.match!r}: expected label matchers like cluster="prod"')
    if not args.idle_hours >= 0:
        raise UsageError(f"--idle-hours {args.idle_hours:g}: must be 0 or more")
    period = make_period(args.start, args.end, args.last, args.step, time.time())
    mapping = team_map(args.team_map) if args.team_map is not None else None
    if args.format == "html":
        from greenops_exporter.commands.report.render_html import check_available

        check_available()
    client = Client(_endpoint(args))
    try:
        if mapping is None and args.by not in ("namespace", "pod", "gpu_model", "hostname"):
            mapping = namespace_labels(client, period, args.by) or None
        raw = fetch(client, period, match, group_labels(args.by, mapping), terminal_progress)
    except QueryError as exc:
        print(f"greenops-exporter: report: {exc}", file=sys.stderr)
        return 1
    if not raw.get("fleet_cost") and not raw.get("group_cost"):
        where = f" matching {{{match}}}" if match else ""
        print(
            f"greenops-exporter: report: no greenops cost series{where} from {iso(period.start)} "
            f"to {iso(period.end)} at {args.prometheus}: is this the Prometheus that scrapes the "
            "exporter, with the carbon collector on and prices set (cost.*)?",
            file=sys.stderr,
        )
        return 1
    report = compute(
        raw,
        period,
        grouping(args.by, mapping, raw.gpu_models),
        args.idle_hours,
        client.queries,
        tuple(client.warnings),
    )
    text = render(report, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            args.out.write_text(text)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: {exc.strerror}") from exc
    return 0
