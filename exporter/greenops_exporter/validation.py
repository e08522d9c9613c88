"""Turn pydantic's validation errors into one line that names each key path."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import ValidationError

# a validator's message that names the key it is about: "device_timeout_seconds: ..."
_NAMED_KEY = re.compile(r"(?:Value error, )?([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): ")
# a key whose name says it holds a secret (the config's SecretStr fields are `token` and
# `password`; web configs have `basic_auth_users`): its value is never shown, whatever the
# error. Whole words: `prompt_tokens_metric` names a counter, not a token.
_SECRET_WORDS = {
    "token",
    "password",
    "passwords",
    "passwd",
    "secret",
    "secrets",
    "apikey",
    "bearer",
}
_SECRET_PAIRS = ("api_key", "private_key", "basic_auth", "credential")


def is_secret_key(loc: tuple[str, ...]) -> bool:
    """Whether any part of a key path names a secret (`carbon.sources.0.token`)."""
    for part in loc:
        name = part.lower().replace("-", "_")
        if _SECRET_WORDS.intersection(name.split("_")) or any(p in name for p in _SECRET_PAIRS):
            return True
    return False


def format_validation_error(
    exc: ValidationError,
    prefix: str = "",
    origin: Callable[[tuple[str, ...]], str | None] | None = None,
) -> str:
    """One line per error: the key path, the message, the value given and, with `origin`,
    where the value came from (`origin` maps a key path to a file and line, a variable or
    a flag). The value is left out for an unknown key (a misspelt `tokn:` holds a token, a
    stray variable may too) and for a key named like a secret: an error is printed and
    logged, so it must never carry one."""
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        where = ".".join(loc) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        if err["type"] == "value_error" and repr(given) in err["msg"]:
            shown = ""  # our validator's message shows it (pydantic's never do: "than 0")
        named = _NAMED_KEY.match(err["msg"]) if err["type"] == "value_error" else None
        key = (*loc, *named.group(1).split(".")) if named else loc
        if err["type"] == "extra_forbidden" or is_secret_key(key):
            shown = ""
        found = origin(key) if origin is not None else None
        source = f" [from {found}]" if found else ""
        parts.append(f"{prefix}{where}: {err['msg']}{shown}{source}")
    return "; ".join(parts)
