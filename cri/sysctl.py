"""Pod sysctls: which names a pod may set, and writing them inside the pod's namespaces.

A pod's sysctls are namespaced kernel parameters, so berthd writes them once into the pinned
namespaces (every container joins those) instead of handing them to each container's runtime.
The writes go through /proc/sys from a thread that joined the pod's namespaces: /proc/sys/net
and the ipc sysctls resolve against the *calling thread's* namespaces (verified on kernel 6.x by
the integration tests), so no process needs to be spawned.

Names follow the kubelet: dots or slashes as separators (``net/ipv4/ip_forward``); a name whose
first separator is a slash has its dots and slashes swapped, so ``net/ipv4/conf/eth0.100/x``
becomes ``net.ipv4.conf.eth0/100.x``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from cri import errors, netns

# The kubelet's "safe" set (pkg/kubelet/sysctl/safe_sysctls.go): allowed without
# --allowed-unsafe-sysctls. berthd applies any namespaced sysctl; admission is the kubelet's job.
SAFE_SYSCTLS: frozenset[str] = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)

_IPC_EXACT = frozenset({"kernel.sem"})
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_UTS_NAMES = frozenset({"kernel.hostname", "kernel.domainname"})
_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_NAME = re.compile(rf"({_SEGMENT}[./])*{_SEGMENT}")
_MAX_NAME = 253


def normalize(name: str) -> str:
    """The dotted form of a sysctl name given with dots or slashes."""
    first = next((ch for ch in name if ch in "./"), ".")
    if first == "/":
        return name.translate(str.maketrans("./", "/."))
    return name


def proc_path(name: str) -> Path:
    """/proc/sys path of a dotted sysctl name (a slash inside a segment stands for a dot)."""
    return Path("/proc/sys") / name.translate(str.maketrans("./", "/."))


def namespace_of(name: str) -> str | None:
    """ "net" or "ipc" for a namespaced sysctl (dotted form), None otherwise."""
    if name.startswith("net."):
        return "net"
    if name in _IPC_EXACT or name.startswith(_IPC_PREFIXES):
        return "ipc"
    return None


def _check_one(name: str, *, host_network: bool, host_ipc: bool) -> str:
    """Validate one dotted name; returns its namespace kind."""
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise errors.InvalidArgument(f"sysctl {name!r} is not a valid sysctl name")
    if name in _UTS_NAMES:
        raise errors.InvalidArgument(f"sysctl {name!r} is not allowed: set the pod hostname")
    kind = namespace_of(name)
    if kind is None:
        raise errors.InvalidArgument(f"sysctl {name!r} is not namespaced and cannot be set")
    if kind == "net" and host_network:
        raise errors.InvalidArgument(f"sysctl {name!r} is not allowed with host network")
    if kind == "ipc" and host_ipc:
        raise errors.InvalidArgument(f"sysctl {name!r} is not allowed with host ipc")
    return kind


def validate_sysctls(sysctls: Mapping[str, str], *, host_network: bool, host_ipc: bool) -> None:
    """Raise InvalidArgument for a malformed name, a name outside the pod's own net/ipc
    namespaces, or one whose namespace the pod shares with the host."""
    for raw, value in sysctls.items():
        _check_one(normalize(raw), host_network=host_network, host_ipc=host_ipc)
        if "\n" in value or "\0" in value:
            raise errors.InvalidArgument(f"sysctl {raw!r} has an invalid value {value!r}")


def _write(name: str, value: str) -> None:
    try:
        fd = os.open(proc_path(name), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.InvalidArgument(f"sysctl {name!r} does not exist on this kernel") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise errors.InvalidArgument(f"sysctl {name!r}={value!r}: {exc.strerror}") from None
    finally:
        os.close(fd)


def apply_sysctls(ns_paths: Mapping[str, Path], sysctls: Mapping[str, str]) -> None:
    """Write ``sysctls`` inside the pod namespaces ``ns_paths`` (kind → pin path).

    Every name must need a kind present in ``ns_paths`` (validate first); raises
    InvalidArgument naming the key when one is missing, unknown to the kernel or refused.
    """
    if not sysctls:
        return
    dotted = {normalize(name): value for name, value in sysctls.items()}
    needed: dict[str, Path] = {}
    for name in dotted:
        kind = namespace_of(name)
        if kind is None or kind not in ns_paths:
            raise errors.InvalidArgument(f"sysctl {name!r} needs the pod's own {kind} namespace")
        needed[kind] = ns_paths[kind]

    def write_all() -> None:
        for name, value in dotted.items():
            _write(name, value)

    netns.run_in_namespaces(needed, write_all)
