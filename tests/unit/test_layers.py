"""Data flows one way: backends and sources -> collection -> pure analysis -> snapshot ->
metrics -> HTTP. Every import inside the package (at module level or in a function) is
read from the source and checked against the layer it comes from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter" / "greenops_exporter"

# plain data and helpers every layer may use
SHARED = ("errors", "validation", "gpu_models", "backends.base", "sources.readings")

# what each layer must never import: a later layer of the flow, or I/O from a pure one
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "analysis": ("backends", "sources", "collect", "metrics", "server", "status_page", "cli"),
    "backends": ("sources", "analysis", "collect", "metrics", "server", "status_page", "cli"),
    "sources": ("analysis", "collect", "metrics", "server", "status_page", "cli", "config"),
    "collect": ("metrics", "server", "status_page", "web_config", "cli"),
    "metrics": ("collect.loop", "collect.device", "server", "status_page", "cli", "backends"),
    "server": ("cli",),
    "status_page": ("cli",),
    "report": ("backends", "sources", "collect", "metrics", "server", "status_page", "cli"),
}


def module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported(path: Path) -> list[str]:
    """Every module of the package that `path` imports, as a dotted name under it."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("greenops_exporter"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # `from .. import config` names a module too
                out.append(".".join([*target, alias.name]))
        elif isinstance(node, ast.Import):
            out += [
                a.name.removeprefix("greenops_exporter.")
                for a in node.names
                if a.name.startswith("greenops_exporter.")
            ]
    return out


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(path: Path) -> list[str]:
    layer = module_name(path)[0] if module_name(path) else ""
    forbidden = FORBIDDEN.get(layer, ())
    return [
        name
        for name in imported(path)
        if any(under(name, f) for f in forbidden)
        and not any(under(name, s) for s in SHARED)
        and not under(name, layer)  # within a layer anything goes
    ]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up_the_flow(path: Path) -> None:
    assert violations(path) == []


def test_the_check_sees_a_violation() -> None:
    """The checker itself: a planted upward import is found, a shared one is not."""
    planted = PACKAGE / "analysis" / "_planted_for_test.py"
    planted.write_text(
        "from ..collect.loop import Collector\nfrom ..backends.base import Reading\n"
        "def f() -> None:\n    from ..sources import rapl\n"
    )
    try:
        assert violations(planted) == ["collect.loop.Collector", "sources.rapl"]
    finally:
        planted.unlink()
