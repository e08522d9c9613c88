"""PID -> container (and pod UID) from /proc/<pid>/cgroup: cgroup v1 and v2, the systemd and
cgroupfs drivers, containerd, CRI-O and Docker path forms.

The container ID comes out as kube-state-metrics writes it (`containerd://<id>`), so that
`greenops_process_energy_joules_total` joins `kube_pod_container_info` on `container_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ID = r"[0-9a-f]{64}"
# systemd driver: .../kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
_SYSTEMD = re.compile(rf"(?P<runtime>cri-containerd|crio|docker)-(?P<id>{_ID})\.scope")
# cgroupfs driver: /kubepods/burstable/pod<uid>/<id>; Docker alone: /docker/<id>
_CGROUPFS = re.compile(rf"/(?:(?P<docker>docker)/)?(?P<id>{_ID})(?:/|$)")
_POD = re.compile(
    r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    container_id: str  # "<runtime>://<64 hex>"
    pod_uid: str = ""  # with dashes; empty outside Kubernetes


def parse_cgroup(text: str) -> CgroupIdentity | None:
    """The container a process runs in, from the text of /proc/<pid>/cgroup; None for a
    process outside any container (or a form this does not know)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        pod = _POD.search(path)
        pod_uid = pod.group("uid").replace("_", "-") if pod else ""
        systemd = _SYSTEMD.search(path)
        if systemd:
            runtime = _RUNTIMES[systemd.group("runtime")]
            return CgroupIdentity(f"{runtime}://{systemd.group('id')}", pod_uid)
        plain = _CGROUPFS.search(path)
        if plain:
            # cgroupfs does not name the runtime: containerd is Kubernetes' default
            runtime = "docker" if plain.group("docker") else "containerd"
            return CgroupIdentity(f"{runtime}://{plain.group('id')}", pod_uid)
    return None


class CgroupReader:
    """Reads and caches each PID's identity; blocking file reads, so call it off the loop."""

    def __init__(self, proc_root: Path = Path("/proc"), cache_size: int = 4096) -> None:
        self.proc_root = proc_root
        self.cache_size = cache_size
        self._cache: dict[int, CgroupIdentity | None] = {}

    def identity(self, pid: int) -> CgroupIdentity | None:
        if pid in self._cache:
            return self._cache[pid]
        try:
            text = (self.proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            return None  # gone, or not visible from here: try again next time
        identity = parse_cgroup(text)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[pid] = identity
        return identity

    def forget(self, live_pids: set[int]) -> None:
        for pid in [p for p in self._cache if p not in live_pids]:
            del self._cache[pid]
