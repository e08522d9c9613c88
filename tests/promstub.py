"""Real HTTP servers on 127.0.0.1 for the report's bad-input tests: one that answers every
request as told (a status, a body), and a proxy to a real Prometheus that can add
warnings (a partial answer, as Thanos and Mimir send) or fail the n-th query."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Answer = Callable[[int, bytes], tuple[int, bytes]]  # (n-th request, body) -> status, body


@contextmanager
def serve(answer: Answer, tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, list]]:
    """A server on a free 127.0.0.1 port; yields its URL and the requests' headers."""
    seen: list[dict[str, str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                seen.append({k.lower(): v for k, v in self.headers.items()})  # any case
                n = len(seen)
            status, out = answer(n, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def proxy(
    upstream: str, warning: str | None = None, fail_at: int | None = None, status: int = 502
) -> Answer:
    """Forwards each query to a real Prometheus, adding a warning to its answer, or
    answering the `fail_at`-th with `status` instead."""

    def answer(n: int, body: bytes) -> tuple[int, bytes]:
        if n == fail_at:
            return status, b"<html>upstream connect error</html>"
        path = "query_range" if b"step=" in body else "query"
        request = urllib.request.Request(f"{upstream}/api/v1/{path}", data=body, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        with urllib.request.urlopen(request, timeout=60) as r:
            data = json.loads(r.read())
        if warning is not None:
            data["warnings"] = [warning]
        return 200, json.dumps(data).encode()

    return answer
