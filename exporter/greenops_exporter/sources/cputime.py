"""CPU time as the kernel counts it, for the machine and for each watched process.

The machine's busy and total time come from /proc/stat, a process's own time from
/proc/<pid>/stat, both read through psutil.

Blocking reads: the collection calls this from its worker threads. psutil honours
`psutil.PROCFS_PATH`, which `kubernetes.proc_root` points at the node's /proc.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil

from greenops_exporter.sources.readings import CpuSample, ProcessCpu


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot. Guest time is already inside user and nice,
    so it is not added twice (as psutil's own cpu_percent does)."""
    t = psutil.cpu_times()
    total = sum(t)
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def sample_cpu(pids: Iterable[int]) -> CpuSample:
    """The machine's CPU time and that of each pid still alive (ended ones are left out)."""
    processes: dict[int, ProcessCpu] = {}
    for pid in set(pids):
        try:
            p = psutil.Process(pid)
            times = p.cpu_times()
            processes[pid] = ProcessCpu(p.create_time(), times.user + times.system)
        except (psutil.Error, OSError):
            continue
    busy, total = machine_seconds()
    return CpuSample(busy, total, processes)
