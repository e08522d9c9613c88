"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS (minimum version,
client certificates) and basic auth with bcrypt hashes, so one file serves this exporter
and node_exporter alike.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional (mTLS)
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      alice: $2y$10$...   # bcrypt hash
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from .config import ConfigError
from .validation import format_validation_error

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
    verifying = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if tls is not None and tls.client_auth_type in verifying and tls.client_ca_file is None:
        raise ConfigError(
            f"web config {path}: tls_server_config.client_ca_file: needed to verify clients"
        )
    return config


def ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_server_config: cannot load certificates: {exc}") from exc
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def basic_auth_middleware(
    users: dict[str, str],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """401 unless the request carries a user and password matching a bcrypt hash.

    bcrypt is slow on purpose (tens of ms); a successful check is remembered (keyed by an
    HMAC of the credentials, never the password itself) so that a scraper every 15 s does
    not pay it each time."""
    hashes = {user: hashed.encode() for user, hashed in users.items()}
    remembered: set[bytes] = set()
    key = bcrypt.gensalt()

    def check(header: str) -> bool:
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
        if bcrypt.checkpw(password.encode(), hashed):
            if len(remembered) > 1024:
                remembered.clear()
            remembered.add(token)
            return True
        return False

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not check(request.headers.get("Authorization", "")):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="greenops-exporter"'},
            )
        return await handler(request)

    return middleware
