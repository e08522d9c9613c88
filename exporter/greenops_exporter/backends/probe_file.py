"""The `probe.json` beside a recording: which GPU each recording is of (model, uuid, bus)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenops_exporter.backends.base import DeviceInfo

PROBE_FILE = "probe.json"


def load_probe_file(probe: Path) -> dict[str, Any]:
    """The probe file's JSON object, {} where there is none; ValueError names the file."""
    if not probe.is_file():
        return {}
    try:
        document = json.loads(probe.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{probe}: not a probe file: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{probe}: not a probe file: expected a JSON object")
    return document


def recording_identity(path: Path) -> tuple[Mapping[str, Any], Path | None]:
    """The GPU's identity from the `probe.json` beside a recording: its `recordings` entry
    for this file (written by `record`, one per GPU), else its `static` (the probe of a
    single-GPU machine). ({}, None) when there is none: the model is then unknown. An entry
    that is there but malformed is a ValueError naming the file and the entry: taken as
    "no probe.json", it would silently drop the model (and so MIG right-sizing)."""
    probe = path.parent / PROBE_FILE
    document = load_probe_file(probe)
    if not document:
        return {}, None
    per_file = document.get("recordings")
    if per_file is not None and not isinstance(per_file, Mapping):
        raise ValueError(
            f"{probe}: `recordings` must be an object of file name -> GPU, got {_shown(per_file)}"
        )
    if per_file is not None and path.name in per_file:
        return _checked(probe, f"recordings[{path.name!r}]", per_file[path.name]), probe
    static = document.get("static")
    if static is not None:
        return _checked(probe, "static", static), probe
    return {}, None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# what replay and analyze read from an entry, and the JSON type each must have
_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "uuid": (str, "a string"),
    "pci": (Mapping, "an object with busId"),
    "memory": (Mapping, "an object with total"),
    "enforced_power_limit_mw": ((int, float), "a number"),
    "arch": (int, "an integer (NVML's architecture code)"),
}


def _checked(probe: Path, where: str, entry: Any) -> Mapping[str, Any]:
    """The entry, once it is an object naming the GPU with fields of the right types."""
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{probe}: {where} must be an object naming the GPU (name, uuid, pci, ...), "
            f"got {_shown(entry)}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"{probe}: {where} has no GPU name (`name`, e.g. 'NVIDIA H100 80GB HBM3'), "
            f"got {_shown(name)}"
        )
    for key, (kind, said) in _FIELDS.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(f"{probe}: {where}.{key} must be {said}, got {_shown(value)}")
    return entry


_ARCH_CODES = {"hopper": 9, "ada": 8, "ampere": 7}  # NVML's nvmlDeviceArchitecture_t


def probe_static(info: DeviceInfo) -> dict[str, Any]:
    """A device's identity in probe.json's `static` form (what replay and analyze read)."""
    static: dict[str, Any] = {
        "name": info.name,
        "uuid": info.uuid,
        "pci": {"busId": info.pci_bus_id},
        "memory": {"total": info.memory_total_bytes},
    }
    if info.power_limit_watts is not None:
        static["enforced_power_limit_mw"] = round(info.power_limit_watts * 1000)
    if info.architecture in _ARCH_CODES:
        static["arch"] = _ARCH_CODES[info.architecture]
    return static
