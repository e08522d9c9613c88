"""Turn pydantic's validation errors into one line that names each key path."""

from __future__ import annotations

from pydantic import ValidationError


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        parts.append(f"{prefix}{where}: {err['msg']}{shown}")
    return "; ".join(parts)
