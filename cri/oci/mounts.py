"""The mount list of a container and the rootfs propagation its bind mounts need.

Order matters to runc, which mounts in list order: first the kernel filesystems every
container gets (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, /sys/fs/cgroup), then the
bind mounts — CRI mounts, the pod's shared files (/etc/hostname, /etc/resolv.conf, /etc/hosts,
/dev/shm) and image volumes — stably sorted by path depth, so a parent is always mounted
before anything inside it. A bind mount takes over its destination: the kernel filesystem or
pod file at the same path is left out, and a CRI mount of /dev removes everything under /dev.

CRI mount options follow containerd: always "rbind"; PRIVATE → "rprivate"; HOST_TO_CONTAINER
→ "rslave", which needs the rootfs itself to be at least a slave; BIDIRECTIONAL → "rshared",
which needs a shared rootfs. A recursive read-only mount ("rro") must be read-only and
private, and is only offered when the runtime supports it (runc ≥ 1.1 does: `runc features`
lists "rro"). SELinux relabelling and id-mapped mounts are the caller's business.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.inputs import SpecInputs

Mount = dict[str, Any]

_PROPAGATION = {
    api_pb2.PROPAGATION_PRIVATE: "rprivate",
    api_pb2.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    api_pb2.PROPAGATION_BIDIRECTIONAL: "rshared",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MountPlan:
    """mounts for the spec, and linux.rootfsPropagation (None: the runtime's default)."""

    mounts: list[Mount]
    rootfs_propagation: str | None


def _mount(dest: str, kind: str, source: str, options: list[str]) -> Mount:
    return {"destination": dest, "type": kind, "source": source, "options": options}


def system_mounts(*, privileged: bool, sys_bind: bool, rro: bool) -> list[Mount]:
    """The kernel filesystems, in mount order. `sys_bind`: bind the host's /sys instead of a
    new sysfs (needed in a user namespace that shares the host's network namespace)."""
    ro = "rw" if privileged else "ro"
    if sys_bind:
        sys = _mount(
            "/sys", "bind", "/sys", ["rbind", "nosuid", "noexec", "nodev", "rro" if rro else "ro"]
        )
    else:
        sys = _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", ro])
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        sys,
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", ro]),
    ]


def _destination(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise errors.InvalidArgument(f"{what}: container path {path!r} is not absolute")
    return posixpath.normpath(path)


def _mode(m: api_pb2.Mount, rro_supported: bool) -> str:
    """ "ro", "rw" or "rro", after the checks containerd makes for recursive read-only."""
    if not m.recursive_read_only:
        return "ro" if m.readonly else "rw"
    where = f"mount {m.container_path!r}"
    if not m.readonly:
        raise errors.InvalidArgument(f"{where}: recursive read-only conflicts with read-write")
    if not rro_supported:
        raise errors.InvalidArgument(f"{where}: the runtime does not support recursive read-only")
    if m.propagation != api_pb2.PROPAGATION_PRIVATE:
        raise errors.InvalidArgument(f"{where}: recursive read-only needs private propagation")
    return "rro"


def _source(m: api_pb2.Mount, inp: SpecInputs) -> str:
    """The host path: as given, or the one the lead prepared for an image volume."""
    if not m.image.image:
        if not m.host_path:
            raise errors.InvalidArgument(f"mount {m.container_path!r} has no host path")
        return m.host_path
    if not m.readonly:
        raise errors.InvalidArgument(f"image volume {m.container_path!r} must be read-only")
    prepared = inp.image_volume_mounts.get(m.container_path)
    if prepared is None:
        raise errors.InvalidArgument(f"image volume {m.container_path!r} was not prepared")
    return prepared


def cri_mount(m: api_pb2.Mount, inp: SpecInputs) -> Mount:
    """One CRI mount as an OCI bind mount."""
    dest = _destination(m.container_path, "mount")
    if m.propagation not in _PROPAGATION:
        raise errors.InvalidArgument(f"mount {dest!r}: unknown propagation {m.propagation}")
    options = ["rbind", _PROPAGATION[m.propagation], _mode(m, inp.recursive_read_only_supported)]
    return _mount(dest, "bind", _source(m, inp), options)


def _pod_file_mounts(inp: SpecInputs, readonly: bool) -> Iterator[Mount]:
    files = inp.pod_files
    mode = "ro" if readonly else "rw"
    paths = (
        ("/etc/hostname", files.hostname if files else None),
        ("/etc/resolv.conf", files.resolv_conf if files else None),
        ("/etc/hosts", files.hosts if files else None),
    )
    for dest, source in paths:
        if source:
            yield _mount(dest, "bind", source, ["rbind", "rprivate", mode])
    shm = "/dev/shm" if "ipc" not in inp.namespaces else (files.shm if files else None)
    if shm:
        yield _mount("/dev/shm", "bind", shm, ["rbind", "rprivate", "rw"])


def _image_config_volumes(inp: SpecInputs) -> Iterator[Mount]:
    for dest, source in sorted(inp.image_config_volumes.items()):
        yield _mount(
            _destination(dest, "image volume"), "bind", source, ["rbind", "rprivate", "rw"]
        )


def _depth(m: Mount) -> int:
    return len([part for part in str(m["destination"]).split("/") if part])


def _covered(dest: str, taken: set[str]) -> bool:
    return dest in taken or ("/dev" in taken and dest.startswith("/dev/"))


def _rootfs_propagation(mounts: Iterable[Mount]) -> str | None:
    options = {opt for m in mounts for opt in m["options"]}
    if "rshared" in options:
        return "rshared"
    return "rslave" if "rslave" in options else None


def build_mounts(inp: SpecInputs, *, privileged: bool, sys_bind: bool) -> MountPlan:
    """Every mount of the container, in the order runc must make them (module docstring).

    Raises errors.InvalidArgument for a relative container path, a recursive read-only
    request that cannot be honoured, or an image volume that is writable or not prepared.
    """
    readonly = inp.config.linux.security_context.readonly_rootfs
    binds = [cri_mount(m, inp) for m in inp.config.mounts]
    taken = {m["destination"] for m in binds}
    extras = [*_pod_file_mounts(inp, readonly), *_image_config_volumes(inp)]
    for extra in extras:
        if extra["destination"] not in taken:
            binds.append(extra)
            taken.add(extra["destination"])
    binds.sort(key=_depth)
    rro = inp.recursive_read_only_supported
    kernel = system_mounts(privileged=privileged, sys_bind=sys_bind, rro=rro)
    kept = [m for m in kernel if not _covered(m["destination"], taken)]
    return MountPlan(mounts=kept + binds, rootfs_propagation=_rootfs_propagation(binds))
