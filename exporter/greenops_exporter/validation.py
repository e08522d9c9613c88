"""Turn pydantic's validation errors into one line that names each key path."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import ValidationError

# a validator's message that names the key it is about: "device_timeout_seconds: ..."
_NAMED_KEY = re.compile(r"(?:Value error, )?([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): ")


def format_validation_error(
    exc: ValidationError,
    prefix: str = "",
    origin: Callable[[tuple[str, ...]], str | None] | None = None,
) -> str:
    """One line per error: the key path, the message, the value given and, with `origin`,
    where the value came from (`origin` maps a key path to a file and line, a variable or
    a flag)."""
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        where = ".".join(loc) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        if repr(given) in err["msg"]:  # a validator's own message already shows the value
            shown = ""
        found = None
        if origin is not None:
            named = _NAMED_KEY.match(err["msg"]) if err["type"] == "value_error" else None
            found = origin((*loc, *named.group(1).split(".")) if named else loc)
        source = f" [from {found}]" if found else ""
        parts.append(f"{prefix}{where}: {err['msg']}{shown}{source}")
    return "; ".join(parts)
