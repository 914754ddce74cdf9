"""Device nodes for a container: CRI `devices`, or every host device for a privileged one.

Looking at the host's /dev is the only I/O spec generation needs besides the image files, so
it sits behind `DeviceProbe`; `HostDeviceProbe` is the real one and tests pass a fake.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cri import errors
from cri.api.v1 import api_pb2

# Directories of /dev that hold no device nodes a container should get (or hold the container's
# own mounts), and the host console, which is not the container's.
_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
_SKIP_FILES = frozenset({"console"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceNode:
    """A character or block device node on the host."""

    path: str
    type: str  # "c" or "b"
    major: int
    minor: int
    file_mode: int  # permission bits only
    uid: int
    gid: int


class DeviceProbe(Protocol):
    """Reads device nodes from the host."""

    def devices_at(self, host_path: str) -> list[DeviceNode]:
        """The node at `host_path` (symlinks followed), or every node below a directory.

        Raises errors.InvalidArgument when the path does not exist or is not a device node.
        Read-only; calling it twice gives the same answer while /dev is unchanged.
        """
        ...

    def host_devices(self) -> list[DeviceNode]:
        """Every device node under /dev, for a privileged container."""
        ...


def _node(path: str, st: os.stat_result) -> DeviceNode | None:
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return DeviceNode(
        path=path,
        type=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
    )


def _walk(directory: str) -> Iterator[DeviceNode]:
    """Device nodes below `directory`; symlinks are not followed (they alias real nodes)."""
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIP_DIRS:
                    yield from _walk(entry.path)
            elif entry.name not in _SKIP_FILES:
                node = _node(entry.path, entry.stat(follow_symlinks=False))
                if node is not None:
                    yield node


class HostDeviceProbe:
    """`DeviceProbe` over the real /dev."""

    def __init__(self, dev_root: str = "/dev") -> None:
        self._dev_root = dev_root

    def devices_at(self, host_path: str) -> list[DeviceNode]:
        try:
            st = os.stat(host_path)
        except FileNotFoundError:
            raise errors.InvalidArgument(f"device {host_path!r} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            return list(_walk(host_path))
        node = _node(host_path, st)
        if node is None:
            raise errors.InvalidArgument(f"{host_path!r} is not a device node")
        return [node]

    def host_devices(self) -> list[DeviceNode]:
        return list(_walk(self._dev_root))


def _check_access(access: str, device: str) -> str:
    if not access:
        return "rwm"
    if set(access) - set("rwm"):
        raise errors.InvalidArgument(f"device {device!r}: invalid permissions {access!r}")
    return access


def _container_path(node: DeviceNode, host_root: str, container_root: str) -> str:
    """Where a node found below a requested host directory appears in the container."""
    if node.path == host_root:
        return container_root
    return posixpath.join(container_root, posixpath.relpath(node.path, host_root))


def _spec_device(node: DeviceNode, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "type": node.type,
        "major": node.major,
        "minor": node.minor,
        "fileMode": node.file_mode,
        "uid": node.uid,
        "gid": node.gid,
    }


def _cgroup_rule(node: DeviceNode, access: str) -> dict[str, Any]:
    return {
        "allow": True,
        "type": node.type,
        "major": node.major,
        "minor": node.minor,
        "access": access,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSet:
    """linux.devices entries and the device-cgroup rules that go with them."""

    devices: list[dict[str, Any]]
    rules: list[dict[str, Any]]


def cri_devices(requested: Iterable[api_pb2.Device], probe: DeviceProbe) -> DeviceSet:
    """The nodes and allow rules for the CRI `devices` of a container."""
    out = DeviceSet(devices=[], rules=[])
    for dev in requested:
        access = _check_access(dev.permissions, dev.host_path)
        target = dev.container_path or dev.host_path
        if not target.startswith("/"):
            raise errors.InvalidArgument(f"device {dev.host_path!r}: {target!r} is not absolute")
        for node in probe.devices_at(dev.host_path):
            out.devices.append(_spec_device(node, _container_path(node, dev.host_path, target)))
            out.rules.append(_cgroup_rule(node, access))
    return out


def privileged_devices(requested: DeviceSet, probe: DeviceProbe) -> list[dict[str, Any]]:
    """The CRI devices plus every host device whose path they do not already take."""
    taken = {d["path"] for d in requested.devices}
    extra = [_spec_device(n, n.path) for n in probe.host_devices() if n.path not in taken]
    return requested.devices + extra
