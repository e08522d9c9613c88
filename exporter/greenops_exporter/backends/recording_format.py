"""One line of a recording (the fixtures format, see tests/fixtures/README.md) <-> a Reading."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from greenops_exporter.backends.base import GpmReading, ProcessReading, Reading

MIB = 1024 * 1024

# recording key in `gpm` -> (GpmReading field, scale)
_GPM_KEYS: dict[str, tuple[str, float]] = {
    "sm_util": ("sm_active", 0.01),
    "sm_occupancy": ("sm_occupancy", 0.01),
    "any_tensor_util": ("tensor_active", 0.01),
    "hmma_tensor_util": ("hmma_tensor_active", 0.01),
    "dram_bw_util": ("dram_active", 0.01),
    "fp64_util": ("fp64_active", 0.01),
    "fp32_util": ("fp32_active", 0.01),
    "fp16_util": ("fp16_active", 0.01),
    "integer_util": ("integer_active", 0.01),
    "graphics_util": ("graphics_active", 0.01),
    "pcie_tx_mib_s": ("pcie_tx_bytes_per_second", MIB),
    "pcie_rx_mib_s": ("pcie_rx_bytes_per_second", MIB),
    "nvlink_tx_mib_s": ("nvlink_tx_bytes_per_second", MIB),
    "nvlink_rx_mib_s": ("nvlink_rx_bytes_per_second", MIB),
}


def _field(sample: Mapping[str, Any], name: str) -> float | None:
    entry = (sample.get("fields") or {}).get(name)
    if not isinstance(entry, Mapping) or "value" not in entry:
        return None  # absent, or {"nvml_return": 3}: not supported
    return float(entry["value"])


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _power_samples(sample: Mapping[str, Any]) -> tuple[tuple[float, float], ...]:
    """The driver's power samples a line carries ([[µs, mW], ...]); none where NVML had none."""
    raw = sample.get("power_samples")
    if not isinstance(raw, list):
        return ()
    return tuple((float(stamp) / 1e6, float(mw) / 1000.0) for stamp, mw in raw)


def reading_from_sample(sample: Mapping[str, Any]) -> Reading:
    """One recorded line -> a Reading, in the exporter's units (watts, joules, ratios, hertz)."""
    gpm_raw = sample.get("gpm")
    gpm = None
    if isinstance(gpm_raw, Mapping):
        gpm_values: dict[str, float] = {}
        for key, (attr, scale) in _GPM_KEYS.items():
            number = _number(gpm_raw.get(key))
            if number is not None:
                gpm_values[attr] = number * scale
        gpm = GpmReading(**gpm_values)
    proc_util: dict[int, tuple[float, float]] = {}
    if isinstance(sample.get("proc_util"), list):
        for entry in sample["proc_util"]:
            proc_util[int(entry["pid"])] = (entry["sm"] / 100.0, entry["mem"] / 100.0)
    processes = tuple(
        ProcessReading(
            pid=int(p["pid"]),
            used_memory_bytes=p.get("used_mem"),
            command=str(p.get("command", "")),
            sm_utilization=proc_util.get(int(p["pid"]), (None, None))[0],
            memory_utilization=proc_util.get(int(p["pid"]), (None, None))[1],
        )
        for p in sample.get("procs") or []
    )

    def scaled(key: str, scale: float) -> float | None:
        value = _number(sample.get(key))
        return None if value is None else value * scale

    instant = _field(sample, "power_instant")
    tx = _field(sample, "pcie_tx_bytes")
    rx = _field(sample, "pcie_rx_bytes")
    energy = scaled("energy_mj", 0.001)
    if energy is None:
        total = _field(sample, "total_energy")
        energy = None if total is None else total / 1000.0
    used = sample.get("mem_used")
    total_mem = sample.get("mem_total")
    return Reading(
        timestamp=float(sample["t"]),
        power_watts=scaled("power_mw", 0.001),
        power_instant_watts=None if instant is None else instant / 1000.0,
        energy_counter_joules=energy,
        utilization_gpu=scaled("util_gpu", 0.01),
        utilization_memory=scaled("util_mem", 0.01),
        memory_used_bytes=None if used is None else int(used),
        memory_total_bytes=None if total_mem is None else int(total_mem),
        temperature_celsius=scaled("temp_c", 1.0),
        sm_clock_hertz=scaled("sm_clock_mhz", 1e6),
        memory_clock_hertz=scaled("mem_clock_mhz", 1e6),
        pstate=None if sample.get("pstate") is None else int(sample["pstate"]),
        clock_event_reasons=(
            None
            if sample.get("clock_event_reasons") is None
            else int(sample["clock_event_reasons"])
        ),
        pcie_tx_bytes=None if tx is None else int(tx),
        pcie_rx_bytes=None if rx is None else int(rx),
        gpm=gpm,
        processes=processes,
        power_samples=_power_samples(sample),
    )


def sample_from_reading(reading: Reading, t: float, wall: float, phase: str = "") -> dict[str, Any]:
    """A Reading -> one line of the fixtures format (the inverse of reading_from_sample)."""

    def scaled(value: float | None, scale: float, digits: int = 0) -> float | int | None:
        if value is None:
            return None
        number = value * scale
        return round(number) if digits == 0 else round(number, digits)

    def field_value(value: float | None, kind: int) -> dict[str, Any]:
        return {"nvml_return": 3} if value is None else {"value": int(value), "type": kind}

    gpm = None
    if reading.gpm is not None:
        gpm = {}
        for key, (attr, scale) in _GPM_KEYS.items():
            value = getattr(reading.gpm, attr)
            gpm[key] = math.nan if value is None else round(value / scale, 3)
    energy_mj = scaled(reading.energy_counter_joules, 1000)
    sample: dict[str, Any] = {
        "t": round(t, 4),
        "wall": wall,
        "phase": phase,
        "power_mw": scaled(reading.power_watts, 1000),
        "util_gpu": scaled(reading.utilization_gpu, 100),
        "util_mem": scaled(reading.utilization_memory, 100),
        "mem_used": reading.memory_used_bytes,
        "mem_total": reading.memory_total_bytes,
        "temp_c": scaled(reading.temperature_celsius, 1),
        "sm_clock_mhz": scaled(reading.sm_clock_hertz, 1e-6),
        "mem_clock_mhz": scaled(reading.memory_clock_hertz, 1e-6),
        "pstate": reading.pstate,
        "clock_event_reasons": reading.clock_event_reasons,
        "fields": {
            "power_instant": field_value(
                None if reading.power_instant_watts is None else reading.power_instant_watts * 1000,
                1,
            ),
            "pcie_tx_bytes": field_value(reading.pcie_tx_bytes, 1),
            "pcie_rx_bytes": field_value(reading.pcie_rx_bytes, 1),
            "total_energy": field_value(energy_mj, 3),
        },
        "gpm": gpm,
        "procs": [
            {"pid": p.pid, "used_mem": p.used_memory_bytes, "command": p.command}
            for p in reading.processes
        ],
        "proc_util": [
            {
                "pid": p.pid,
                "sm": scaled(p.sm_utilization, 100),
                "mem": scaled(p.memory_utilization or 0.0, 100),
                "ts": 0,
            }
            for p in reading.processes
            if p.sm_utilization is not None
        ],
    }
    if energy_mj is not None:
        sample["energy_mj"] = energy_mj
    if reading.power_samples:  # the driver's samples, as nvmlDeviceGetSamples gave them
        sample["power_samples"] = [
            [round(stamp * 1e6), round(watts * 1000)] for stamp, watts in reading.power_samples
        ]
    return sample
