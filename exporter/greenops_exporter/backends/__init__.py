"""Where readings come from: real GPUs (nvml), dcgm-exporter's page (dcgm), a simulated
fleet (sim), recordings (replay).

`choose_backend` turns the config into one backend and a sentence saying why it was chosen,
which the exporter logs once and exports in greenops_backend_info.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from greenops_exporter.backends.base import Backend


def nvml_status(nvml: ModuleType | None = None) -> tuple[bool, str]:
    """Can NVML start here, and how many GPUs does it see? Never raises."""
    if nvml is None:
        try:
            import pynvml
        except ImportError as exc:
            return False, f"nvidia-ml-py not importable ({exc})"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
        return False, f"NVML did not load ({exc})"
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:
        return False, f"NVML loaded but cannot count GPUs ({exc})"
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    if count == 0:
        return False, "NVML loaded but sees no GPU"
    return True, f"NVML loaded and sees {count} GPU(s)"


def choose_backend(
    kind: str,
    *,
    scenario: Path | None = None,
    seed: int | None = None,
    replay_files: list[Path] | None = None,
    replay_speed: float = 1.0,
    replay_loop: bool = True,
    dcgm_url: str = "http://127.0.0.1:9400/metrics",
    dcgm_timeout: float = 0.5,
    dcgm_kubernetes: bool | None = None,
    nvml: ModuleType | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Backend, str]:
    from greenops_exporter.backends.nvml import NvmlBackend
    from greenops_exporter.backends.replay import ReplayBackend
    from greenops_exporter.backends.sim import SimBackend, load_scenario

    if kind == "nvml":
        return NvmlBackend(nvml, clock), "configured: nvml"
    if kind == "dcgm":  # only when asked: a page on :9400 is no proof of whose GPUs it shows
        from greenops_exporter.backends.dcgm import DcgmBackend

        backend = DcgmBackend(dcgm_url, dcgm_timeout, clock, kubernetes=dcgm_kubernetes)
        return backend, f"configured: dcgm ({dcgm_url})"
    if kind == "replay":
        return (
            ReplayBackend(list(replay_files or []), replay_speed, replay_loop, clock),
            "configured: replay",
        )
    # load (and so validate) the scenario before anything starts serving
    sim = SimBackend(load_scenario(scenario), clock=clock, seed=seed)
    which = f"scenario {scenario}" if scenario else "the embedded demo scenario"
    if kind == "sim":
        return sim, f"configured: sim ({which})"
    ok, why = nvml_status(nvml)
    if ok:
        return NvmlBackend(nvml, clock), f"auto: {why}"
    return sim, f"auto: {why}; simulating GPUs from {which}"
