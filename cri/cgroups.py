"""Where pod and container cgroups go, for both drivers, on v2 and v1/hybrid hosts.

cgroupfs driver: ``cgroup_root`` decides the base: ``/`` on a real node; ``self`` on hosts where
processes may not leave berthd's own cgroup (each v1 hierarchy may place berthd differently, so
we hand the OCI runtime a *relative* path, which runc resolves under its own cgroup in every
hierarchy — the shim, and so runc, inherit berthd's); any other absolute path is a fixed base.
The pod's ``cgroup_parent`` is a path below that base.

systemd driver: the pod's ``cgroup_parent`` is a slice name (``kubepods-besteffort-pod<uid>.slice``,
as the kubelet's systemd driver sends it; a path ending in one is read as its last element),
``berth.slice`` when the pod names none. runc and crun get ``--systemd-cgroup`` and
``<slice>:berth:<id>``, and ask systemd for a transient ``berth-<id>.scope`` in that slice.
systemd places a slice by its dashes: ``a-b.slice`` is ``/a.slice/a-b.slice``. ``cgroup_root``
does not apply (systemd owns the tree).

The container's leaf is named after its id (``<id>`` for cgroupfs, ``berth-<id>.scope`` for
systemd), which is what the kubelet and cAdvisor look for.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_PARENT = "/berth"  # for pods that name no cgroup parent (crictl, critest)
DEFAULT_SLICE = "berth.slice"  # the same, for the systemd driver
SCOPE_PREFIX = "berth"
SYSTEMD_FLAG = "--systemd-cgroup"  # runc's and crun's global flag for the systemd driver

# A slice unit name systemd accepts: unit-name characters, no empty dash-separated part.
_SLICE = re.compile(r"[A-Za-z0-9:_.\\]+(-[A-Za-z0-9:_.\\]+)*\.slice")


def is_cgroup_v2(mountpoint: Path = Path("/sys/fs/cgroup")) -> bool:
    """True on a pure cgroup v2 host (hybrid hosts have v1 controllers at the mountpoint)."""
    return (mountpoint / "cgroup.controllers").exists()


def runtime_options(driver: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """The OCI runtime's global flags: the configured ones, plus ``--systemd-cgroup`` for the
    systemd driver (runc and crun read the cgroupsPath as ``slice:prefix:name`` only then)."""
    if driver == "systemd" and SYSTEMD_FLAG not in options:
        return (SYSTEMD_FLAG, *options)
    return options


def container_cgroups_path(*, driver: str, cgroup_root: str, parent: str, container_id: str) -> str:
    """The ``linux.cgroupsPath`` for a container of a pod with cgroup parent ``parent``."""
    if driver == "systemd":
        return systemd_path(parent, container_id)
    return cgroupfs_path(cgroup_root, parent or DEFAULT_PARENT, container_id)


def cgroupfs_path(cgroup_root: str, parent: str, leaf: str) -> str:
    relative = "/".join(p for p in (*parent.split("/"), leaf) if p)
    if cgroup_root == "self":
        return relative
    return "/" + "/".join(p for p in (*cgroup_root.split("/"), relative) if p)


def slice_name(parent: str) -> str:
    """The systemd slice of a pod's ``cgroup_parent`` (see :func:`slice_error`)."""
    return parent.rstrip("/").rsplit("/", 1)[-1] if parent else DEFAULT_SLICE


def slice_error(parent: str) -> str | None:
    """Why ``parent`` cannot be a pod's cgroup parent under the systemd driver, or None."""
    name = slice_name(parent)
    if not _SLICE.fullmatch(name):
        return (
            f'cgroup_parent {parent!r} is not a systemd slice: with cgroup_driver = "systemd" '
            "it must name a slice such as 'kubepods-besteffort-pod<uid>.slice'"
        )
    if "/" in parent and parent.rstrip("/") != slice_path(name):
        return (
            f"cgroup_parent {parent!r}: systemd places slice {name} at {slice_path(name)}, "
            "not there; give the slice name alone"
        )
    return None


def systemd_path(parent: str, container_id: str) -> str:
    """runc's systemd form ``<slice>:<prefix>:<name>``; the parent must be a slice name."""
    return f"{slice_name(parent)}:{SCOPE_PREFIX}:{container_id}"


def slice_path(name: str) -> str:
    """Where systemd puts slice ``name``: ``a-b.slice`` is ``/a.slice/a-b.slice``."""
    parts = name.removesuffix(".slice").split("-")
    return "".join("/" + "-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def systemd_scope_path(parent: str, container_id: str) -> str:
    """The cgroup of a container under the systemd driver, from the cgroup root."""
    return f"{slice_path(slice_name(parent))}/{SCOPE_PREFIX}-{container_id}.scope"
