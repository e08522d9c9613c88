"""GPU (and MIG device) -> pod, namespace, container from the kubelet pod-resources API
(gRPC v1 `List` on a unix socket), and the process identifier built on it.

The kubelet knows which container each device was allocated to (device IDs are GPU or MIG
UUIDs for the NVIDIA device plugin; with time-slicing, UUIDs with a `::N` replica suffix).
It does not know PIDs: a process on a device with exactly one owning container gets that
container's pod, namespace and container; on a device shared by several containers, the
pod is left empty (its cgroup container ID is still exported for joins).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from greenops_exporter.backends.base import DeviceInfo, ProcessReading, Reading
from greenops_exporter.sources.base import PolledSource, SourceError
from greenops_exporter.sources.cgroups import CgroupReader

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


@dataclass(frozen=True, slots=True)
class Owner:
    namespace: str
    pod: str
    container: str


DeviceOwners = Mapping[str, tuple[Owner, ...]]


def device_owners(response: object, resource_prefix: str = "nvidia.com/") -> DeviceOwners:
    """ListPodResourcesResponse -> device UUID -> the containers it is allocated to."""
    owners: dict[str, list[Owner]] = {}
    for pod in getattr(response, "pod_resources", []):
        for container in pod.containers:
            for devices in container.devices:
                if not devices.resource_name.startswith(resource_prefix):
                    continue
                for device_id in devices.device_ids:
                    uuid = device_id.split("::", 1)[0]  # time-slicing replicas
                    owner = Owner(pod.namespace, pod.name, container.name)
                    if owner not in owners.setdefault(uuid, []):
                        owners[uuid].append(owner)
    return MappingProxyType({k: tuple(v) for k, v in owners.items()})


class KubeletPodResources(PolledSource[DeviceOwners]):
    kind = "kubelet"

    def __init__(
        self,
        socket_path: Path = DEFAULT_SOCKET,
        interval_seconds: float = 10.0,
        timeout_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("pod-resources", interval_seconds, monotonic)
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds

    async def fetch(self) -> DeviceOwners:
        import grpc  # imported here: 10 MiB of memory that only Kubernetes nodes need

        from greenops_exporter.sources.podresources import api_pb2, api_pb2_grpc

        if not self.socket_path.exists():
            raise SourceError(f"no kubelet socket at {self.socket_path}")
        async with grpc.aio.insecure_channel(f"unix://{self.socket_path}") as channel:
            stub = api_pb2_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
            try:
                response = await stub.List(
                    api_pb2.ListPodResourcesRequest(), timeout=self.timeout_seconds
                )
            except grpc.aio.AioRpcError as exc:
                raise SourceError(f"List failed: {exc.code().name}: {exc.details()}") from exc
        return device_owners(response)


class ProcessIdentifier:
    """Fills in a process's container ID (cgroups) and pod, namespace, container (kubelet).

    Called from the collection's worker threads: it reads only /proc and the kubelet
    source's last good map (an immutable mapping swapped whole by the source)."""

    def __init__(
        self,
        kubelet: KubeletPodResources | None,
        cgroups: CgroupReader | None,
    ) -> None:
        self.kubelet = kubelet
        self.cgroups = cgroups

    def __call__(
        self, info: DeviceInfo, reading: Reading, process: ProcessReading
    ) -> ProcessReading:
        if process.pod:  # already known (the simulator says so itself)
            return process
        container_id = process.container_id
        if self.cgroups is not None:
            identity = self.cgroups.identity(process.pid)
            if identity is not None:
                container_id = identity.container_id
        owner: Owner | None = None
        owners = self.kubelet.value if self.kubelet is not None else None
        if owners:
            device = info.uuid
            if process.gpu_instance_id is not None:
                for mig in reading.mig_devices:
                    if mig.gpu_instance_id == process.gpu_instance_id:
                        device = mig.uuid
            found = owners.get(device) or owners.get(info.uuid) or ()
            if len(found) == 1:
                owner = found[0]
        if owner is None:
            if container_id == process.container_id:
                return process
            return replace(process, container_id=container_id)
        return replace(
            process,
            container_id=container_id,
            namespace=owner.namespace,
            pod=owner.pod,
            container=owner.container,
        )
