"""Data flows one way: backends and sources -> collection -> pure analysis -> snapshot ->
metrics -> HTTP. Every import inside the package (at module level or in a function) is
read from the source and checked against the layer it comes from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter" / "greenops_exporter"

# plain data and helpers every layer may use
SHARED = ("config.errors", "config.validation", "facts", "backends.base", "sources.readings")

# what each layer must never import: a later layer of the flow, or I/O from a pure one;
# a module belongs to the longest layer name its dotted name starts with
LATER = ("http", "commands", "cli")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "facts": ("analysis", "backends", "sources", "collect", "metrics", "config", *LATER),
    "analysis": ("backends", "sources", "collect", "metrics", *LATER),
    "backends": ("sources", "analysis", "collect", "metrics", *LATER),
    "sources": ("analysis", "collect", "metrics", "config", *LATER),
    "config": ("collect", "metrics", *LATER),
    "collect": ("metrics", *LATER),
    "metrics": ("collect.loop", "collect.device", "backends", *LATER),
    "http": ("commands", "cli"),
    "commands": ("cli",),
    # the report reads Prometheus, never the exporter's own collection
    "commands.report": ("backends", "sources", "collect", "metrics", "http", "cli"),
}

# the package's top level holds folders (the layers) and its entry points only
TOP_LEVEL = {"__init__.py", "__main__.py", "py.typed"}


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
    here = ".".join(module_name(path))
    layer = max((key for key in FORBIDDEN if under(here, key)), key=len, default="")
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


def test_the_top_level_holds_folders_and_entry_points_only() -> None:
    loose = sorted(p.name for p in PACKAGE.iterdir() if p.is_file() and p.name not in TOP_LEVEL)
    assert loose == []
    layers = {key.split(".")[0] for key in FORBIDDEN}
    assert layers <= {p.name for p in PACKAGE.iterdir() if p.is_dir()}


def resolve(name: str) -> str:
    """The module an imported dotted name lives in (a name imported from a module, or the
    module itself)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = PACKAGE.joinpath(*parts[:end])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:end])
    return ""


def import_cycles() -> list[list[str]]:
    """Every circle of imports between the package's modules, type-only imports included
    (a circle to a reader all the same)."""
    graph = {
        ".".join(module_name(p)): {resolve(n) for n in imported(p)} - {"", ".".join(module_name(p))}
        for p in MODULES
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_circle_remains() -> None:
    assert import_cycles() == []
