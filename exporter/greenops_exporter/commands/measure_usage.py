"""`measure`'s mean utilisations over the run, for CodeCarbon's *_utilization_percent columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from greenops_exporter.collect import DeviceSnapshot
from greenops_exporter.sources.cputime import machine_seconds


@dataclass(slots=True)
class Usage:
    """The run's mean utilisations, as CodeCarbon's tracker averages them: the machine's
    CPU busy share, the GPUs' utilisation and the RAM in use, sampled once a cycle."""

    cpu_start: tuple[float, float] | None = None  # (busy, total) when the command started
    cpu_percent: float | None = None
    gpu: list[float] = field(default_factory=list)
    ram_percent: list[float] = field(default_factory=list)
    ram_used_gb: list[float] = field(default_factory=list)

    def sample(self, devices: Sequence[DeviceSnapshot]) -> None:
        memory = psutil.virtual_memory()
        self.ram_percent.append(memory.percent)
        self.ram_used_gb.append(memory.used / 2**30)  # CodeCarbon's GB are GiB
        self.gpu.extend(
            d.reading.utilization_gpu * 100
            for d in devices
            if d.reading is not None and d.reading.utilization_gpu is not None
        )

    def start(self) -> None:
        self.cpu_start = machine_seconds()

    def stop(self) -> None:
        """The machine's CPU busy share over the run, as CodeCarbon 3.3.2's
        SystemCPULoadMeter counts it (guest time inside user time; iowait idle)."""
        if self.cpu_start is None:
            return
        busy, total = machine_seconds()
        whole = total - self.cpu_start[1]
        if whole > 0:
            share = (busy - self.cpu_start[0]) / whole * 100
            self.cpu_percent = min(max(share, 0.0), 100.0)

    def as_json(self) -> dict[str, float | None]:
        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 3) if values else None

        cpu = self.cpu_percent
        return {
            "cpu_utilization_percent": None if cpu is None else round(cpu, 3),
            "gpu_utilization_percent": mean(self.gpu),
            "ram_utilization_percent": mean(self.ram_percent),
            "ram_used_gb": mean(self.ram_used_gb),
        }
