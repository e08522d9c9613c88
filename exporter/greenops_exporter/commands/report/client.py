"""The Prometheus HTTP API's instant and range queries, with the options a real endpoint
needs (bearer token file, basic auth, TLS CA, extra headers), and clear errors."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class QueryError(Exception):
    """The endpoint could not answer a query: unreachable, an HTTP error, a body that is
    not the API's JSON, or status "error". The message names the endpoint and the cause."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # the API root, e.g. http://prometheus:9090 or https://mimir/prometheus
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token_file: Path | None = None
    basic_auth: tuple[str, str] | None = None  # user, password
    ca_file: Path | None = None
    timeout_seconds: float = 120.0


@dataclass
class Client:
    endpoint: Endpoint
    queries: int = 0  # sent, for the report's footer and the bench
    warnings: list[str] = field(default_factory=list)  # partial answers (Thanos, Mimir)

    def instant(self, expr: str, time: float) -> list[dict[str, Any]]:
        return self._call("query", {"query": expr, "time": f"{time:.3f}"}, "vector")

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._call("query_range", params, "matrix")

    def _headers(self) -> dict[str, str]:
        e = self.endpoint
        headers = {"Accept": "application/json", "User-Agent": "greenops-exporter-report"}
        if e.bearer_token_file is not None:
            try:
                token = e.bearer_token_file.read_text().strip()
            except OSError as exc:
                raise QueryError(f"--bearer-token-file {e.bearer_token_file}: {exc}") from exc
            headers["Authorization"] = f"Bearer {token}"
        elif e.basic_auth is not None:
            pair = f"{e.basic_auth[0]}:{e.basic_auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        headers.update(dict(e.headers))
        return headers

    def _call(self, path: str, params: dict[str, str], result_type: str) -> list[dict[str, Any]]:
        url = f"{self.endpoint.url.rstrip('/')}/api/v1/{path}"
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(url, data=body, headers=self._headers(), method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        context = None
        if url.startswith("https:"):
            ca = self.endpoint.ca_file
            context = ssl.create_default_context(cafile=None if ca is None else str(ca))
        self.queries += 1
        try:
            with urllib.request.urlopen(
                request, timeout=self.endpoint.timeout_seconds, context=context
            ) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise QueryError(f"{url}: HTTP {exc.code} {exc.reason}{_api_error(exc)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise QueryError(f"{url}: unreachable ({reason})") from exc
        return self._parse(url, raw, result_type)

    def _parse(self, url: str, raw: bytes, result_type: str) -> list[dict[str, Any]]:
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise QueryError(f"{url}: the answer is not JSON ({len(raw)} bytes: {exc})") from exc
        if not isinstance(answer, dict) or "status" not in answer:
            raise QueryError(f"{url}: the answer is not the Prometheus API's (no status)")
        if answer["status"] != "success":
            kind = answer.get("errorType", "error")
            raise QueryError(f"{url}: {kind}: {answer.get('error', 'no message')}")
        for warning in answer.get("warnings") or ():
            if warning not in self.warnings:  # a partial answer: kept, and said in the report
                self.warnings.append(str(warning))
        data = answer.get("data")
        if not isinstance(data, dict) or data.get("resultType") != result_type:
            got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise QueryError(f"{url}: expected a {result_type} result, got {got}")
        result = data.get("result")
        if not isinstance(result, list):
            raise QueryError(f"{url}: the result is not a list")
        return result


def _api_error(exc: urllib.error.HTTPError) -> str:
    """The API's own message where a 4xx/5xx carries one (a bad query says why)."""
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError):
        return ""
    if isinstance(answer, dict) and answer.get("error"):
        return f": {answer.get('errorType', 'error')}: {answer['error']}"
    return ""
