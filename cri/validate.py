"""Checks on CRI request fields that several RPCs share: names, paths, resource values.

Everything here raises :class:`cri.errors.InvalidArgument` naming the field, before the
request changes anything.
"""

from __future__ import annotations

import os

from cri import cgroups, errors
from cri.api.v1 import api_pb2

MAX_NAME = 253  # Kubernetes object names (DNS subdomain); namespaces and uids are shorter
MAX_CPU_SHARES = 262_144
MAX_CPU_PERIOD_US = 1_000_000  # 1 s: the kernel's limit for cfs_period_us
MAX_QUOTA_US = 1 << 44  # far above any real quota, far below int64 overflow in sums
MAX_BYTES = 1 << 62


def metadata_name(where: str, value: str, *, required: bool = True) -> None:
    if required and not value:
        raise errors.InvalidArgument(f"{where} is empty")
    if len(value.encode()) > MAX_NAME:
        raise errors.InvalidArgument(f"{where} is longer than {MAX_NAME} bytes")
    if any(c in value for c in "\x00\n\r;=") or value != value.strip():
        raise errors.InvalidArgument(f"{where} {value[:64]!r} has characters a name cannot have")


def relative_path(where: str, value: str) -> None:
    """A path that must stay below the directory it is joined to."""
    if value.startswith("/") or ".." in value.split("/") or "\x00" in value:
        raise errors.InvalidArgument(f"{where} {value!r} must be relative and without '..'")


def absolute_path(where: str, value: str) -> None:
    if not os.path.isabs(value) or ".." in value.split("/") or "\x00" in value:
        raise errors.InvalidArgument(f"{where} {value!r} must be absolute and without '..'")


def cgroup_parent(value: str, *, driver: str = "cgroupfs") -> None:
    """A pod's cgroup parent: a path without '..' (cgroupfs), a slice name (systemd)."""
    if value and (".." in value.replace(":", "/").split("/") or "\x00" in value):
        raise errors.InvalidArgument(f"cgroup_parent {value!r} must not contain '..'")
    if driver == "systemd" and value:
        problem = cgroups.slice_error(value)
        if problem is not None:
            raise errors.InvalidArgument(problem)


def resources(where: str, res: api_pb2.LinuxContainerResources) -> None:
    """Values the kernel (and sums of them) can take; -1 means unlimited where it may."""
    checks = (
        ("cpu_shares", res.cpu_shares, 0, MAX_CPU_SHARES),
        ("cpu_period", res.cpu_period, 0, MAX_CPU_PERIOD_US),
        ("cpu_quota", res.cpu_quota, -1, MAX_QUOTA_US),
        ("memory_limit_in_bytes", res.memory_limit_in_bytes, -1, MAX_BYTES),
        ("memory_swap_limit_in_bytes", res.memory_swap_limit_in_bytes, -1, MAX_BYTES),
        ("oom_score_adj", res.oom_score_adj, -1000, 1000),
    )
    for name, value, low, high in checks:
        if not low <= value <= high:
            raise errors.InvalidArgument(f"{where}.{name} {value} is outside [{low}, {high}]")
    for limit in res.hugepage_limits:
        if not 0 <= limit.limit <= MAX_BYTES:
            raise errors.InvalidArgument(f"{where}.hugepage_limits {limit.limit} is out of range")
