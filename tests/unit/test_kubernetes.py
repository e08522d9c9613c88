"""PID -> container from cgroup files, device -> pod from a real gRPC kubelet on a unix socket."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from greenops_exporter.backends.base import DeviceInfo, MigReading, ProcessReading, Reading
from greenops_exporter.sources.cgroups import CgroupReader, parse_cgroup
from greenops_exporter.sources.kubelet import KubeletPodResources, Owner, ProcessIdentifier
from greenops_exporter.sources.podresources import api_pb2, api_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
CID = "4a1f0e7c9b2d3e8f" * 4
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

CGROUPS = {
    "v2 systemd containerd": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}"
        f".slice/cri-containerd-{CID}.scope\n",
        f"containerd://{CID}",
        UID,
    ),
    "v2 systemd cri-o": (
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
        f"cri-o://{CID}",
        UID,
    ),
    "v1 cgroupfs": (
        f"12:memory:/kubepods/burstable/pod{UID}/{CID}\n11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n",
        f"containerd://{CID}",
        UID,
    ),
    "v2 cgroupfs besteffort": (
        f"0::/kubepods/besteffort/pod{UID}/{CID}\n",
        f"containerd://{CID}",
        UID,
    ),
    "docker alone v1": (f"4:cpu:/docker/{CID}\n", f"docker://{CID}", ""),
    "docker systemd v2": (f"0::/system.slice/docker-{CID}.scope\n", f"docker://{CID}", ""),
}


@pytest.mark.parametrize("form", sorted(CGROUPS))
def test_cgroup_path_forms(form: str) -> None:
    text, container_id, pod_uid = CGROUPS[form]
    identity = parse_cgroup(text)
    assert identity is not None
    assert identity.container_id == container_id
    assert identity.pod_uid == pod_uid


@pytest.mark.parametrize(
    "text",
    [
        "0::/user.slice/user-1000.slice/session-3.scope\n",
        "0::/\n",
        "",
        "garbage\n",
        "1:name=systemd:/init.scope",
    ],
)
def test_processes_outside_containers(text: str) -> None:
    assert parse_cgroup(text) is None


def test_reader_uses_a_proc_tree_and_caches(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text(CGROUPS["v1 cgroupfs"][0])
    reader = CgroupReader(proc_root=tmp_path)
    assert reader.identity(42) is not None and reader.identity(42).pod_uid == UID
    (tmp_path / "42" / "cgroup").unlink()
    assert reader.identity(42) is not None  # cached while the PID lives
    reader.forget(live_pids=set())
    assert reader.identity(42) is None  # gone
    assert reader.identity(7) is None  # never there


# --- the kubelet over gRPC -------------------------------------------------------------------


class Kubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.fail = False
        self.slow = False
        self.pods = [
            api_pb2.PodResources(
                name="trainer-0",
                namespace="ml",
                containers=[
                    api_pb2.ContainerResources(
                        name="main",
                        devices=[
                            api_pb2.ContainerDevices(
                                resource_name="nvidia.com/gpu", device_ids=["GPU-a"]
                            ),
                            api_pb2.ContainerDevices(
                                resource_name="example.com/nic", device_ids=["GPU-b"]
                            ),
                        ],
                    )
                ],
            ),
            api_pb2.PodResources(
                name="infer-1",
                namespace="serving",
                containers=[
                    api_pb2.ContainerResources(
                        name="server",
                        devices=[
                            api_pb2.ContainerDevices(
                                resource_name="nvidia.com/mig-1g.10gb", device_ids=["MIG-x"]
                            )
                        ],
                    )
                ],
            ),
            # two pods time-slicing GPU-s
            *[
                api_pb2.PodResources(
                    name=f"slice-{i}",
                    namespace="shared",
                    containers=[
                        api_pb2.ContainerResources(
                            name="c",
                            devices=[
                                api_pb2.ContainerDevices(
                                    resource_name="nvidia.com/gpu", device_ids=[f"GPU-s::{i}"]
                                )
                            ],
                        )
                    ],
                )
                for i in range(2)
            ],
        ]

    async def List(self, request, context):
        if self.slow:
            await asyncio.sleep(1.0)
        if self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "kubelet restarting")
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


def with_kubelet(tmp_path: Path, test) -> None:
    socket = tmp_path / "kubelet.sock"

    async def go() -> None:
        kubelet = Kubelet()
        server = grpc.aio.server()
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(kubelet, server)
        server.add_insecure_port(f"unix://{socket}")
        await server.start()
        try:
            await test(socket, kubelet)
        finally:
            await server.stop(None)

    asyncio.run(go())


def device(uuid: str) -> DeviceInfo:
    return DeviceInfo(
        0, uuid, "NVIDIA H100 80GB HBM3", "bus", 1, 700.0, "hopper", False, "d", frozenset()
    )


def test_list_over_a_unix_socket_maps_devices_to_pods(tmp_path: Path) -> None:
    async def test(socket: Path, kubelet: Kubelet) -> None:
        source = KubeletPodResources(socket, interval_seconds=1)
        assert await source.poll_once()
        owners = source.value
        assert owners["GPU-a"] == (Owner("ml", "trainer-0", "main"),)
        assert "GPU-b" not in owners  # not an NVIDIA resource
        assert owners["MIG-x"] == (Owner("serving", "infer-1", "server"),)
        assert len(owners["GPU-s"]) == 2
        identify = ProcessIdentifier(source, None)
        p = identify(
            device("GPU-a"), Reading(timestamp=0), ProcessReading(pid=1, used_memory_bytes=1)
        )
        assert (p.namespace, p.pod, p.container) == ("ml", "trainer-0", "main")
        mig = Reading(timestamp=0, mig_devices=(MigReading(3, 0, "MIG-x", "1g.10gb", 0, 10),))
        p = identify(
            device("GPU-m"), mig, ProcessReading(pid=2, used_memory_bytes=1, gpu_instance_id=3)
        )
        assert p.pod == "infer-1"
        shared = identify(
            device("GPU-s"), Reading(timestamp=0), ProcessReading(pid=3, used_memory_bytes=1)
        )
        assert shared.pod == ""  # two owners: not guessed

        # the kubelet fails: the source is down, counts it, keeps the last good map
        kubelet.fail = True
        assert not await source.poll_once()
        status = source.status()
        assert not status.up and status.errors == 1 and "UNAVAILABLE" in status.last_error
        assert source.value is owners
        assert source.next_delay() == 1  # then 2, 4 … while it stays down
        await source.poll_once()
        assert source.next_delay() == 2
        kubelet.fail = False
        assert await source.poll_once() and source.status().up

    with_kubelet(tmp_path, test)


def test_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    source = KubeletPodResources(tmp_path / "none.sock")
    assert not asyncio.run(source.poll_once())
    assert "no kubelet socket" in source.status().last_error


def test_cgroups_and_kubelet_together(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "9").mkdir(parents=True)
    (proc / "9" / "cgroup").write_text(CGROUPS["v2 systemd containerd"][0])

    async def test(socket: Path, kubelet: Kubelet) -> None:
        source = KubeletPodResources(socket)
        await source.poll_once()
        identify = ProcessIdentifier(source, CgroupReader(proc))
        p = identify(
            device("GPU-a"), Reading(timestamp=0), ProcessReading(pid=9, used_memory_bytes=1)
        )
        assert p.container_id == f"containerd://{CID}" and p.pod == "trainer-0"

    with_kubelet(tmp_path, test)


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    proto = "greenops_exporter/sources/podresources/api.proto"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(ROOT / "exporter"),
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "exporter" / proto),
        ],
        check=True,
    )
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py"):
        fresh = (tmp_path / "greenops_exporter/sources/podresources" / name).read_text()
        committed = (ROOT / "exporter/greenops_exporter/sources/podresources" / name).read_text()
        assert fresh == committed, f"{name} is stale: run make protos"


def test_a_slow_kubelet_is_down_after_its_deadline(tmp_path: Path) -> None:
    async def test(socket: Path, kubelet: Kubelet) -> None:
        source = KubeletPodResources(socket, timeout_seconds=0.2)
        assert await source.poll_once()
        kubelet.slow = True
        assert not await source.poll_once()
        status = source.status()
        assert not status.up and "DEADLINE_EXCEEDED" in status.last_error
        assert source.value is not None  # the last good map is kept

    with_kubelet(tmp_path, test)
