"""Powercap RAPL zones under a sysfs root: find them once, then read their energy counters.

Blocking file reads: the collection calls these from its worker threads, never the loop.

The kernel lists every zone both flat (`/sys/class/powercap/intel-rapl:0:1`, symlinks) and
nested (`intel-rapl:0/intel-rapl:0:1`); zones are keyed by that directory name so each is
read once. AMD packages (Zen, kernel 5.8+) appear through the same `intel-rapl` interface.
`intel-rapl-mmio:*` repeats the package counter through MMIO and is skipped, or a package
would be counted twice.

Since CVE-2020-8694 (Platypus) `energy_uj` is readable by root only. A zone whose counter
cannot be read is reported once, with the reason, and left out: never exported as 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from greenops_exporter.sources.readings import Zone, ZoneSample

ZONE_DIR = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
ROOT_ONLY = (
    "energy_uj is readable by root only since CVE-2020-8694: run the exporter as root "
    "(uid 0 needs no capability) or grant CAP_DAC_READ_SEARCH"
)


@dataclass(frozen=True, slots=True)
class UnreadableZone:
    id: str
    zone: str
    package: str
    reason: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the powercap tree offers: readable zones, unreadable ones and why, and a
    sentence when there is no RAPL at all."""

    root: Path
    zones: tuple[Zone, ...] = ()
    unreadable: tuple[UnreadableZone, ...] = ()
    problem: str = ""


def read_energy_uj(zone_path: Path) -> int:
    """The one place a zone's `energy_uj` is read (root-only on current kernels)."""
    with open(zone_path / "energy_uj") as f:
        return int(f.read().strip())


def _read_text(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _zone_dirs(root: Path) -> dict[str, Path]:
    """Zone directories by name, flat or nested one level under a package."""
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if ZONE_DIR.match(entry.name):
            found.setdefault(entry.name, entry)
            if entry.is_dir():
                for child in sorted(entry.iterdir()):
                    if ZONE_DIR.match(child.name):
                        found.setdefault(child.name, child)
    return found


def _order(name: str) -> tuple[int, int]:
    m = ZONE_DIR.match(name)
    assert m is not None
    return int(m.group(1)), -1 if m.group(2) is None else int(m.group(2))


def _labels(kernel_name: str, top_name: str) -> tuple[str, str]:
    """(zone, package) from a zone's name and its top-level zone's name: package-1/dram ->
    ("dram", "1"); psys -> ("psys", "")."""
    zone = re.sub(r"[^a-z0-9_]", "_", re.sub(r"-\d+$", "", kernel_name.lower())) or "unknown"
    m = re.fullmatch(r"package-(\d+)", top_name)
    return zone, m.group(1) if m else ""


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied: {ROOT_ONLY}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a number: {exc}"


def discover(root: Path) -> Discovery:
    """Every zone under `root`, each probed once so that a root-only counter is known before
    the first cycle rather than failing every cycle."""
    try:
        dirs = _zone_dirs(root)
    except OSError as exc:
        return Discovery(root, problem=f"{root}: {exc.strerror or exc} (no powercap sysfs)")
    if not dirs:
        return Discovery(root, problem=f"{root}: no intel-rapl zones (no RAPL on this CPU)")
    zones: list[Zone] = []
    unreadable: list[UnreadableZone] = []
    names: dict[str, str] = {}
    for name in sorted(dirs, key=_order):
        path = dirs[name]
        top = name.split(":")[0] + ":" + name.split(":")[1]
        try:
            names[name] = _read_text(path / "name")
        except OSError as exc:
            unreadable.append(UnreadableZone(name, "unknown", "", f"name: {_reason(exc)}"))
            continue
        zone, package = _labels(names[name], names.get(top, names[name]))
        try:
            max_range = int(_read_text(path / "max_energy_range_uj"))
            read_energy_uj(path)
        except (OSError, ValueError) as exc:
            unreadable.append(UnreadableZone(name, zone, package, _reason(exc)))
            continue
        zones.append(Zone(name, path, zone, package, max_range))
    return Discovery(root, tuple(zones), tuple(unreadable))


def read_zones(zones: tuple[Zone, ...]) -> tuple[ZoneSample, ...]:
    """This cycle's counters; a failed read is reported per zone, the others carry on."""
    out = []
    for zone in zones:
        try:
            out.append(ZoneSample(zone.id, read_energy_uj(zone.path)))
        except (OSError, ValueError) as exc:
            out.append(ZoneSample(zone.id, None, _reason(exc)))
    return tuple(out)
