"""Builders and fakes shared by the cri.oci unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.devices import DeviceNode
from cri.oci.inputs import HostInfo, PodFilePaths, SpecInputs
from cri.oci.security import ALL_CAPABILITIES

PASSWD = b"""\
root:x:0:0:root:/root:/bin/sh
# a comment line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
default-user:x:1000:1000::/home/default-user:/bin/sh
broken-line-without-fields
"""
GROUP = b"""\
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
default-user:x:1000:default-user
group-defined-in-image:x:50000:default-user
audio:x:29: www-data
"""

HOST = HostInfo(
    hostname="node-1",
    machine="x86_64",
    kernel=(6, 1),
    capabilities=ALL_CAPABILITIES,
    swap_controller=True,
    hugetlb_controller=True,
)


def image_files(files: Mapping[str, bytes] | None = None) -> Any:
    """A read_file callback over an in-memory image (/etc/passwd and /etc/group by default)."""
    contents = {"/etc/passwd": PASSWD, "/etc/group": GROUP} if files is None else dict(files)
    return contents.get


@dataclass
class FakeDeviceProbe:
    """DeviceProbe over a dict of host path → nodes; counts what it was asked."""

    nodes: dict[str, list[DeviceNode]] = field(default_factory=dict)
    host: list[DeviceNode] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def devices_at(self, host_path: str) -> list[DeviceNode]:
        self.asked.append(host_path)
        if host_path not in self.nodes:
            raise errors.InvalidArgument(f"device {host_path!r} does not exist")
        return self.nodes[host_path]

    def host_devices(self) -> list[DeviceNode]:
        return self.host


def node(path: str, major: int, minor: int, kind: str = "c") -> DeviceNode:
    return DeviceNode(path=path, type=kind, major=major, minor=minor, file_mode=0o666, uid=0, gid=0)


def container_config(**kwargs: Any) -> api_pb2.ContainerConfig:
    kwargs.setdefault("metadata", api_pb2.ContainerMetadata(name="ctr"))
    return api_pb2.ContainerConfig(**kwargs)


def with_security(**kwargs: Any) -> api_pb2.ContainerConfig:
    """A container config whose only linux part is the given security context."""
    sc = api_pb2.LinuxContainerSecurityContext(**kwargs)
    return container_config(
        command=["sleep", "1"], linux=api_pb2.LinuxContainerConfig(security_context=sc)
    )


POD_NAMESPACES: dict[str, str | None] = {
    "pid": None,
    "network": "/run/berth/ns/net/pod",
    "ipc": "/run/berth/ns/ipc/pod",
    "uts": "/run/berth/ns/uts/pod",
}


def inputs(config: api_pb2.ContainerConfig | None = None, **overrides: Any) -> SpecInputs:
    """SpecInputs for a plain pod container; keyword arguments replace any field."""
    values: dict[str, Any] = {
        "container_id": "c0ffee",
        "sandbox_id": "5a4d60",
        "config": config if config is not None else container_config(command=["sleep", "1"]),
        "sandbox_config": api_pb2.PodSandboxConfig(
            hostname="pod-host",
            metadata=api_pb2.PodSandboxMetadata(name="pod", namespace="ns", uid="uid-1"),
        ),
        "image_config": {"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}},
        "image_name": "registry.example/busybox:1",
        "rootfs": "rootfs",
        "namespaces": dict(POD_NAMESPACES),
        "pod_files": PodFilePaths(
            hostname="/run/berth/pod/hostname",
            resolv_conf="/run/berth/pod/resolv.conf",
            hosts="/run/berth/pod/hosts",
            shm="/run/berth/pod/shm",
        ),
        "cgroups_path": "berth/pod/c0ffee",
        "sandbox_privileged": False,
        "read_file": image_files(),
        "oom_score_adj_floor": None,
        "cgroup_v2": True,
        "host": HOST,
        "device_probe": FakeDeviceProbe(),
        "load_seccomp_profile": lambda path: None,
    }
    values.update(overrides)
    return SpecInputs(**values)
