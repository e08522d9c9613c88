"""Turn pydantic's validation errors into one line that names each key path."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

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


def _one_model(annotation: Any) -> Any:
    """`X | None` -> X; a union of several models -> the first (for key names only)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else args[0] if len(args) == 1 else annotation
    return annotation


def keys_allowed(model: Any, loc: Sequence[str]) -> list[str]:
    """The keys the model allows beside the last part of `loc` ([] where unknown): walks
    the fields, stepping over list indexes and mapping keys."""
    node, parts = model, list(loc[:-1])
    while True:
        node = _one_model(node)
        if get_origin(node) in (list, tuple, dict, set, frozenset):
            if not parts:
                return []
            parts.pop(0)  # an index or a mapping's key
            args = get_args(node)
            node = args[-1] if args else None
        elif isinstance(node, type) and issubclass(node, BaseModel):
            if not parts:
                return list(node.model_fields)
            field = node.model_fields.get(parts.pop(0))
            if field is None:
                return []
            node = field.annotation
        else:
            return []


def did_you_mean(model: Any, loc: Sequence[str]) -> str:
    """'; did you mean 'interval_seconds'?' for a misspelt key, as the commands say for a
    misspelt command; '' when nothing is close."""
    if not loc:
        return ""
    close = difflib.get_close_matches(loc[-1], keys_allowed(model, loc), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_validation_error(
    exc: ValidationError,
    prefix: str = "",
    origin: Callable[[tuple[str, ...]], str | None] | None = None,
    model: type[BaseModel] | None = None,
) -> str:
    """One line per error: the key path, the message, the value given and, with `origin`,
    where the value came from (`origin` maps a key path to a file and line, a variable or
    a flag). With `model`, an unknown key gets the closest known one. The value is left out
    for an unknown key (a misspelt `tokn:` holds a token, a
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
        hint = did_you_mean(model, loc) if model and err["type"] == "extra_forbidden" else ""
        parts.append(f"{prefix}{where}: {err['msg']}{hint}{shown}{source}")
    return "; ".join(parts)
