"""The `probe.json` beside a recording: which GPU each recording is of (model, uuid, bus)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import DeviceInfo

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
    single-GPU machine). ({}, None) when there is none: the model is then unknown."""
    probe = path.parent / PROBE_FILE
    document = load_probe_file(probe)
    if not document:
        return {}, None
    per_file = document.get("recordings")
    if isinstance(per_file, Mapping) and isinstance(per_file.get(path.name), Mapping):
        return per_file[path.name], probe
    static = document.get("static")
    if isinstance(static, Mapping):
        return static, probe
    return {}, None


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
