"""Where config values come from: the YAML file (with each key's line), GREENOPS_* variables
and flags, merged in that order, remembering which source set each key for error messages;
and where secrets come from (the config, a file or a variable)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from greenops_exporter.config.errors import ConfigError

ENV_PREFIX = "GREENOPS_"
CONFIG_ENV = "GREENOPS_CONFIG"  # the config file, under the flag --config


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_values(
    environ: Mapping[str, str], skip: Collection[str] = ()
) -> list[tuple[str, list[str], Any]]:
    """(variable, key path, value) of each GREENOPS_* variable but GREENOPS_CONFIG and those
    in `skip` (the secrets that `*_env` keys name, see secret_sources)."""
    out = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name in skip:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        out.append((name, path, value))
    return out


def secret_sources(tree: Any) -> set[str]:
    """The variables that the config's `*_env` keys name (`token_env: GREENOPS_EM_TOKEN`).
    They hold secrets, not config keys: read as keys, a GREENOPS_ one would be an unknown
    key that stops the exporter."""
    found: set[str] = set()
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if str(key).endswith("_env") and isinstance(value, str):
                found.add(value)
            else:
                found |= secret_sources(value)
    elif isinstance(tree, list):
        for item in tree:
            found |= secret_sources(item)
    return found


def env_overrides(environ: Mapping[str, str], skip: Collection[str] = ()) -> dict[str, Any]:
    """GREENOPS_COLLECT__INTERVAL_SECONDS=2 -> {"collect": {"interval_seconds": 2}}.

    Values are read as YAML scalars, so numbers, booleans and lists keep their types.
    GREENOPS_CONFIG is no key: it names the config file.
    """
    tree: dict[str, Any] = {}
    for _, path, value in env_values(environ, skip):
        _set_path(tree, path, value)
    return tree


Key = tuple[str, ...]


class Origins:
    """Where each key's value came from (file and line, variable, flag), so that an error
    can say where to fix it. A later source replaces what it overrides."""

    def __init__(self) -> None:
        self.where: dict[Key, str] = {}

    def set(self, key: Key, origin: str, value: Any) -> None:
        if not isinstance(value, dict):  # it replaces all below it; a mapping is merged
            self.where = {k: v for k, v in self.where.items() if k[: len(key)] != key}
        self._walk(key, origin, value)

    def _walk(self, key: Key, origin: str, value: Any) -> None:
        self.where[key] = origin
        if isinstance(value, dict):
            for name, sub in value.items():
                self._walk((*key, str(name)), origin, sub)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                self._walk((*key, str(index)), origin, sub)

    def add_yaml(self, node: yaml.Node | None, key: Key, file: Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*key, str(key_node.value))
                self.where[child] = f"{file} line {key_node.start_mark.line + 1}"
                self.add_yaml(value_node, child, file)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*key, str(index))
                self.where[child] = f"{file} line {item.start_mark.line + 1}"
                self.add_yaml(item, child, file)

    def __call__(self, key: Key) -> str | None:
        for end in range(len(key), 0, -1):
            if key[:end] in self.where:
                return self.where[key[:end]]
        return None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint on one line, with its places but without its snippets of the
    file: the line quoted may hold a token."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        place = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
        if text or place:
            parts.append(f"{text or ''} ({place})" if place else str(text))
    return ": ".join(parts) or type(exc).__name__


def config_file(path: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The config file: the flag's, else $GREENOPS_CONFIG's; and how it was named."""
    if path is not None:
        return path, ""
    named = environ.get(CONFIG_ENV)
    return (Path(named), f" (from ${CONFIG_ENV})") if named else (None, "")


def dotted_overrides(pairs: Mapping[str, Any]) -> dict[str, Any]:
    """{'collect.interval_seconds': 2} -> nested dict, dropping unset (None) flags."""
    tree: dict[str, Any] = {}
    for dotted, value in pairs.items():
        if value is not None:
            _set_path(tree, dotted.split("."), value)
    return tree


def file_and_environment(
    path: Path | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], Origins]:
    """The config file's tree (the flag's file, else $GREENOPS_CONFIG's) with the GREENOPS_*
    variables merged over it, and where each key came from."""
    path, named = config_file(path, environ)
    data: dict[str, Any] = {}
    origins = Origins()
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"config file {path}{named}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
            origins.add_yaml(yaml.compose(text, Loader=yaml.SafeLoader), (), path)
        except yaml.YAMLError as exc:
            problem = yaml_problem(exc)  # without the line's text: it may hold a token
            raise ConfigError(f"config file {path}{named}: not valid YAML: {problem}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}{named}: the top level must be a mapping")
        data = loaded or {}
    secrets = secret_sources(deep_merge(data, env_overrides(environ)))  # not keys
    for name, key, value in env_values(environ, secrets):
        origins.set(tuple(key), f"${name}", value)
    data = deep_merge(data, env_overrides(environ, secrets))
    return data, origins


def secret(
    where: str,
    value: SecretStr | None,
    file: Path | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """A secret from the config, a file or an environment variable (in that order)."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}_file: cannot read {file}: {exc.strerror}") from exc
    if env is not None:
        found = (os.environ if environ is None else environ).get(env)
        if found is None:
            raise ConfigError(f"{where}_env: ${env} is not set")
        return found
    return None
