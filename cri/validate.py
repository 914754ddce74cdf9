"""Checks on CRI request fields that several RPCs share: names, paths, resource values.

Everything here raises :class:`cri.errors.InvalidArgument` naming the field, before the
request changes anything.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

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


def port_mappings(where: str, mappings: Iterable[api_pb2.PortMapping]) -> None:
    """Known protocol, ports in range (a host port needs a container port), an IP or nothing."""
    for i, m in enumerate(mappings):
        here = f"{where}[{i}]"
        if m.protocol not in api_pb2.Protocol.values():
            raise errors.InvalidArgument(f"{here}.protocol {m.protocol} is not TCP, UDP or SCTP")
        for name, port in (("container_port", m.container_port), ("host_port", m.host_port)):
            if not 0 <= port <= 65535:
                raise errors.InvalidArgument(f"{here}.{name} {port} is not in 0..65535")
        if m.host_port and not m.container_port:
            raise errors.InvalidArgument(f"{here}: host_port {m.host_port} needs a container_port")
        if m.host_ip:
            try:
                ipaddress.ip_address(m.host_ip)
            except ValueError:
                raise errors.InvalidArgument(
                    f"{here}.host_ip {m.host_ip[:64]!r} is not an IP address"
                ) from None


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
