"""The container HEALTHCHECK: exit 0 when this host's exporter answers /healthz with 200.

`python -m greenops_exporter.http.healthcheck [PATH]` exits 1 otherwise. It must work whatever
the exporter's web config says, without knowing it: the health endpoints need no
credentials, and the scheme is found by trying TLS first (certificates are not verified, as
a kubelet's HTTPS probe does not verify them: this is the process's own address, asked
whether it lives) and plain HTTP when the server does not speak TLS. The port is the one
the exporter reads from the same environment (`GREENOPS_SERVER__LISTEN_ADDRESS`), 9479 by
default. Kept to the standard library: it starts every 30 s.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
from collections.abc import Sequence

DEFAULT_ADDRESS = ":9479"


def target(address: str) -> tuple[str, int]:
    """The host and port to ask: a wildcard listen address is asked on loopback."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def status(host: str, port: int, path: str, timeout: float) -> int:
    """The HTTP status of GET path, over TLS when the server speaks it, else plain HTTP."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection: http.client.HTTPConnection
    try:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        connection.request("GET", path)
    except TimeoutError:
        raise  # a hung server: asking again in plain HTTP would only wait twice
    except OSError:  # a plain HTTP server answered (or dropped) the TLS hello
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.request("GET", path)
    try:
        return connection.getresponse().status
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "/healthz"
    address = os.environ.get("GREENOPS_SERVER__LISTEN_ADDRESS") or DEFAULT_ADDRESS
    try:
        host, port = target(address)
        code = status(host, port, path, timeout=2.0)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"unhealthy: {address}{path}: {exc}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"unhealthy: {address}{path} answered {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
