"""The README documents every metric, config key and flag the code has."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

from documentation import documentation
from greenops_exporter.cli import build_parser
from greenops_exporter.config.models import Config
from greenops_exporter.metrics import ALL_METRICS, COLLECTOR_NAMES

README = documentation()


def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += keys(annotation, f"{prefix}{name}.")
        elif dataclasses.is_dataclass(annotation):
            out += [f"{prefix}{name}.{f.name}" for f in dataclasses.fields(annotation)]
        else:
            out.append(prefix + name)
    return out


def test_every_metric_is_documented() -> None:
    missing = [m.name for m in ALL_METRICS if f"`{m.name}`" not in README]
    assert missing == []


def test_every_config_key_is_documented() -> None:
    assert len(keys(Config)) > 15
    collectors = {f"collectors.{n}" for n in COLLECTOR_NAMES}
    missing = [k for k in keys(Config) if f"`{k}`" not in README and k not in collectors]
    assert missing == []
    assert "`collectors.gpu` … `collectors.mig`" in README


def test_every_flag_is_documented() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = [
        option
        for action in serve._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert len(flags) > 20  # the parser was really read
    missing = []
    for flag in flags:
        if flag.startswith(("--collector.", "--no-collector.")):
            continue
        stem = flag.replace("--no-", "--")
        if (
            f"`{flag}" not in README
            and f"`{stem}" not in README
            and f"--[no-]{stem[2:]}" not in README
        ):
            missing.append(flag)
    assert missing == []
    assert "--[no-]collector.NAME" in README
