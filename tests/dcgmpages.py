"""dcgm-exporter pages for the tests: written in exactly its format (HELP and TYPE once per
field, its label set and order, its units and number formatting), from the recorded H100
trace, and served by a real aiohttp server on 127.0.0.1 whose page can change, stall, fail.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures" / "dcgm"
MIB = 2**20
H100_UUID = "GPU-e8b6b100-c246-322a-802b-56ddb5cc4c04"  # the recorded board (probe.json)
RESERVED_MIB = 480  # the driver's reservation on the recorded H100 (mem_used, no process)

# field -> (TYPE, HELP), as dcgm-exporter's default counters CSV writes them
FIELDS: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEM_CLOCK": ("gauge", "Memory clock frequency (in MHz)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_POWER_USAGE_INSTANT": ("gauge", "Current instantaneous power usage (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": (
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    "DCGM_FI_DEV_PSTATE": ("gauge", "Performance state (P-State) 0-15."),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("gauge", "Current clock event reasons."),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %)."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_RESERVED": ("gauge", "Framebuffer memory reserved (in MiB)."),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", "Ratio of time the graphics engine is active."),
    "DCGM_FI_PROF_SM_ACTIVE": ("gauge", "The ratio of cycles an SM has at least 1 warp assigned."),
    "DCGM_FI_PROF_SM_OCCUPANCY": ("gauge", "The ratio of number of warps resident on an SM."),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (
        "gauge",
        "Ratio of cycles the tensor (HMMA) pipe is active.",
    ),
    "DCGM_FI_PROF_DRAM_ACTIVE": (
        "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
    ),
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": ("gauge", "Ratio of cycles the fp32 pipes are active."),
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": ("gauge", "Ratio of cycles the fp16 pipes are active."),
    "DCGM_FI_PROF_PCIE_TX_BYTES": (
        "gauge",
        "The rate of data transmitted over the PCIe bus - including both protocol headers "
        "and data payloads - in bytes per second.",
    ),
    "DCGM_FI_PROF_PCIE_RX_BYTES": (
        "gauge",
        "The rate of data received over the PCIe bus - including both protocol headers "
        "and data payloads - in bytes per second.",
    ),
}
FLOAT_FIELDS = {"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_POWER_USAGE_INSTANT"} | {
    f for f in FIELDS if f.startswith("DCGM_FI_PROF_") and "_BYTES" not in f
}

Series = tuple[str, Mapping[str, str], float | None]


def real_page(name: str) -> str:
    """A page operators published (`fixtures/dcgm/real/`), without the `# source:` line the
    fixture adds."""
    lines = (FIXTURES / "real" / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("# source:")) + "\n"


def labels(
    gpu: int = 0,
    uuid: str = H100_UUID,
    model: str = "NVIDIA H100 80GB HBM3",
    pod: tuple[str, str, str] | None = ("", "", ""),
    instance: tuple[int, str] | None = None,
    bus: str = "00000000:00:06.0",
) -> dict[str, str]:
    """dcgm-exporter's labels in its order; `pod` (namespace, pod, container) None means its
    Kubernetes mapping is off, ("", "", "") that it is on and no pod holds the GPU."""
    out = {"gpu": str(gpu), "UUID": uuid, "pci_bus_id": bus, "device": f"nvidia{gpu}"}
    out["modelName"] = model
    if instance is not None:
        out["GPU_I_PROFILE"], out["GPU_I_ID"] = instance[1], str(instance[0])
    out["Hostname"] = "gpu-node-1"
    out["DCGM_FI_DRIVER_VERSION"] = "580.159.04"
    if pod is not None:
        out["container"], out["namespace"], out["pod"] = pod[2], pod[0], pod[1]
    return out


def _number(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if name in FLOAT_FIELDS:
        return f"{value:f}"
    return str(round(value))


def render(series: Iterable[Series]) -> str:
    """A page: every field once with HELP and TYPE, then its series, in first-seen order."""
    by_field: dict[str, list[Series]] = {}
    for s in series:
        by_field.setdefault(s[0], []).append(s)
    lines = []
    for name, group in by_field.items():
        kind, text = FIELDS.get(name, ("gauge", name))
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for _, lab, value in group:
            body = ",".join(f'{k}="{v}"' for k, v in lab.items())
            lines.append(f"{name}{{{body}}} {_number(name, value)}")
    return "\n".join(lines) + "\n"


def sample_series(
    sample: Mapping[str, Any], lab: Mapping[str, str], profiling: bool = True
) -> list[Series]:
    """One recorded H100 sample as dcgm-exporter would have written it (its units)."""
    gpm = sample.get("gpm") or {}
    fields = sample["fields"]
    used = sample["mem_used"] / MIB - RESERVED_MIB
    out: list[Series] = [
        ("DCGM_FI_DEV_SM_CLOCK", lab, sample["sm_clock_mhz"]),
        ("DCGM_FI_DEV_MEM_CLOCK", lab, sample["mem_clock_mhz"]),
        ("DCGM_FI_DEV_GPU_TEMP", lab, sample["temp_c"]),
        ("DCGM_FI_DEV_POWER_USAGE", lab, sample["power_mw"] / 1000),
        ("DCGM_FI_DEV_POWER_USAGE_INSTANT", lab, fields["power_instant"]["value"] / 1000),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", lab, sample["energy_mj"]),
        ("DCGM_FI_DEV_PSTATE", lab, sample["pstate"]),
        ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", lab, sample["clock_event_reasons"]),
        ("DCGM_FI_DEV_GPU_UTIL", lab, sample["util_gpu"]),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", lab, sample["util_mem"]),
        ("DCGM_FI_DEV_FB_FREE", lab, (sample["mem_total"] - sample["mem_used"]) / MIB),
        ("DCGM_FI_DEV_FB_USED", lab, used),
        ("DCGM_FI_DEV_FB_RESERVED", lab, RESERVED_MIB),
    ]
    if profiling and gpm:
        ratio = {
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "graphics_util",
            "DCGM_FI_PROF_SM_ACTIVE": "sm_util",
            "DCGM_FI_PROF_SM_OCCUPANCY": "sm_occupancy",
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "any_tensor_util",
            "DCGM_FI_PROF_DRAM_ACTIVE": "dram_bw_util",
            "DCGM_FI_PROF_PIPE_FP32_ACTIVE": "fp32_util",
            "DCGM_FI_PROF_PIPE_FP16_ACTIVE": "fp16_util",
        }
        out += [(name, lab, gpm[key] / 100) for name, key in ratio.items()]
        out += [
            ("DCGM_FI_PROF_PCIE_TX_BYTES", lab, gpm["pcie_tx_mib_s"] * MIB),
            ("DCGM_FI_PROF_PCIE_RX_BYTES", lab, gpm["pcie_rx_mib_s"] * MIB),
        ]
    return out


def h100_page(
    sample: Mapping[str, Any],
    pod: tuple[str, str, str] = ("bench", "matmul-0", "torch"),
    profiling: bool = True,
) -> str:
    """The recorded sample on a Kubernetes node: `pod` holds the GPU while a process does."""
    holder = pod if sample.get("procs") else ("", "", "")
    return render(sample_series(sample, labels(pod=holder), profiling))


class PageServer:
    """A real HTTP server on 127.0.0.1 (its own thread and event loop) serving `page`, or
    failing as told: `status` other than 200, `delay` seconds before answering, `body`."""

    def __init__(self, page: str = "") -> None:
        self.page = page
        self.status = 200
        self.delay = 0.0
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(
            status=self.status, text=self.page, content_type="text/plain", charset="utf-8"
        )

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> PageServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
