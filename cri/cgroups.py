"""Where pod and container cgroups go, for both drivers, on v2 and v1/hybrid hosts.

``cgroup_root`` decides the base: ``/`` on a real node; ``self`` on hosts where processes may
not leave berthd's own cgroup (each v1 hierarchy may place berthd differently, so we hand the
OCI runtime a *relative* path, which runc resolves under its own cgroup in every hierarchy —
the shim, and so runc, inherit berthd's); any other absolute path is a fixed base.

The container's leaf is named after its id (``<id>`` for cgroupfs, ``berth-<id>.scope`` for
systemd), which is what the kubelet and cAdvisor look for.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PARENT = "/berth"  # for pods that name no cgroup parent (crictl, critest)


def is_cgroup_v2(mountpoint: Path = Path("/sys/fs/cgroup")) -> bool:
    """True on a pure cgroup v2 host (hybrid hosts have v1 controllers at the mountpoint)."""
    return (mountpoint / "cgroup.controllers").exists()


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


def systemd_path(parent: str, container_id: str) -> str:
    """runc's systemd form ``<slice>:<prefix>:<name>``; the parent must be a slice name."""
    slice_name = Path(parent).name if parent else "berth.slice"
    if not slice_name.endswith(".slice"):
        slice_name = "berth.slice"
    return f"{slice_name}:berth:{container_id}"
