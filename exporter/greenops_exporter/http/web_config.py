"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS (minimum version,
client certificates) and basic auth with bcrypt hashes, so one file serves this exporter
and node_exporter alike.

    tls_server_config:
      cert_file: server.crt       # relative names: beside this file, as exporter-toolkit reads them
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional (mTLS)
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      alice: $2y$10$...   # bcrypt hash
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from greenops_exporter.config.models import ConfigError
from greenops_exporter.config.validation import format_validation_error

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None


class WebConfig(_Strict):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = {}


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file; errors name the key and never show a password hash."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"web config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config {path}: not valid YAML") from exc
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"web config {path}: {format_validation_error(exc)}") from exc
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"web config {path}: basic_auth_users.{user}: not a bcrypt hash")
    tls = config.tls_server_config
    if tls is None:
        return config
    verifying = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if tls.client_auth_type in verifying and tls.client_ca_file is None:
        raise ConfigError(
            f"web config {path}: tls_server_config.client_ca_file: needed to verify clients"
        )
    tls = _beside(tls, Path(path).parent)
    ssl_context(tls, f"web config {path}")  # unreadable certificates: refused now, by name
    return config.model_copy(update={"tls_server_config": tls})


def _beside(tls: TlsServerConfig, directory: Path) -> TlsServerConfig:
    """Relative file names are read from the web config's own directory, as exporter-toolkit
    reads them, so that one file serves this exporter and node_exporter alike."""
    ca = tls.client_ca_file
    return tls.model_copy(
        update={
            "cert_file": directory / tls.cert_file,
            "key_file": directory / tls.key_file,
            "client_ca_file": None if ca is None else directory / ca,
        }
    )


def ssl_context(tls: TlsServerConfig, where: str = "web config") -> ssl.SSLContext:
    """The server's TLS context; an error names the web config, the key and the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    files = [("cert_file", tls.cert_file), ("key_file", tls.key_file)]
    if tls.client_ca_file is not None:
        files.append(("client_ca_file", tls.client_ca_file))
    for key, file in files:  # ssl's own errors do not say which file
        try:
            file.open("rb").close()
        except OSError as exc:
            raise ConfigError(
                f"{where}: tls_server_config.{key}: cannot read {file}: {exc.strerror or exc}"
            ) from exc
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}: tls_server_config.cert_file, key_file: cannot load the certificate "
            f"{tls.cert_file} with the key {tls.key_file}: {exc}"
        ) from exc
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{where}: tls_server_config.client_ca_file: cannot load {tls.client_ca_file}: "
                f"{exc}"
            ) from exc
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Answered without credentials: a kubelet probe, a Docker HEALTHCHECK and a load balancer
# cannot carry a secret, and these say only "ok"/"ready" or why not (no GPU, no config).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


def basic_auth_middleware(
    users: dict[str, str], public: frozenset[str] = PUBLIC_PATHS
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """401 unless the request carries a user and password matching a bcrypt hash, except
    on the `public` routes (the health endpoints).

    bcrypt is slow on purpose (tens of ms), so it runs in a worker thread, never on the
    event loop; a successful check is remembered (keyed by an HMAC of the credentials,
    never the password itself) so that a scraper every 15 s does not pay it each time."""
    import bcrypt  # only where basic auth is configured: 0.3 MiB the serve path spares

    hashes = {user: hashed.encode() for user, hashed in users.items()}
    remembered: set[bytes] = set()
    key = bcrypt.gensalt()

    async def check(header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = hashes.get(user)
        if hashed is None:
            return False
        token = hmac.new(key, f"{user}:{password}".encode(), "sha256").digest()
        if token in remembered:
            return True
        # in a worker thread: a wrong password must not stall the collection on the loop
        if await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed):
            if len(remembered) > 1024:
                remembered.clear()
            remembered.add(token)
            return True
        return False

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # the route the router matched, not the raw path: only those handlers go unchecked
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in public:
            return await handler(request)
        if not await check(request.headers.get("Authorization", "")):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="greenops-exporter"'},
            )
        return await handler(request)

    return middleware
