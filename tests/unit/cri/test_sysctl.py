from __future__ import annotations

from pathlib import Path

import pytest

from cri import errors
from cri.sysctl import (
    SAFE_SYSCTLS,
    apply_sysctls,
    namespace_of,
    normalize,
    proc_path,
    validate_sysctls,
)


@pytest.mark.parametrize(
    ("name", "dotted"),
    [
        ("net.ipv4.ip_forward", "net.ipv4.ip_forward"),
        ("net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        ("net/ipv4/conf/eno2.100/rp_filter", "net.ipv4.conf.eno2/100.rp_filter"),
        ("net.ipv4.conf.eno2/100.rp_filter", "net.ipv4.conf.eno2/100.rp_filter"),
        ("kernel.shmmax", "kernel.shmmax"),
    ],
)
def test_normalize(name: str, dotted: str) -> None:
    assert normalize(name) == dotted


def test_proc_path_swaps_back() -> None:
    assert proc_path("net.ipv4.conf.eno2/100.rp_filter") == Path(
        "/proc/sys/net/ipv4/conf/eno2.100/rp_filter"
    )
    assert proc_path("fs.mqueue.msg_max") == Path("/proc/sys/fs/mqueue/msg_max")


ALLOWED = [
    "kernel.shm_rmid_forced",
    "kernel.shmmax",
    "kernel.msgmax",
    "kernel.sem",
    "fs.mqueue.msg_max",
    "net.ipv4.ip_dynaddr",
    "net/ipv4/ip_local_port_range",
    "net.core.somaxconn",
]


@pytest.mark.parametrize("name", ALLOWED)
def test_namespaced_sysctls_are_allowed(name: str) -> None:
    validate_sysctls({name: "1"}, host_network=False, host_ipc=False)


@pytest.mark.parametrize(
    ("name", "host_network", "host_ipc", "why"),
    [
        ("net.ipv4.ip_forward", True, False, "host network"),
        ("net.core.somaxconn", True, True, "host network"),
        ("kernel.msgmax", False, True, "host ipc"),
        ("fs.mqueue.msg_max", False, True, "host ipc"),
        ("kernel.sem", False, True, "host ipc"),
        ("kernel.hostname", False, False, "hostname"),
        ("kernel.domainname", False, False, "hostname"),
        ("kernel.pid_max", False, False, "not namespaced"),
        ("vm.swappiness", False, False, "not namespaced"),
        ("kernel.semaphore", False, False, "not namespaced"),
        ("fs.file-max", False, False, "not namespaced"),
        ("net..ipv4", False, False, "not a valid"),
        ("net.ipv4.", False, False, "not a valid"),
        ("Net.ipv4.x", False, False, "not a valid"),
        ("net.ipv4.x y", False, False, "not a valid"),
        ("net/../../etc/passwd", False, False, "not a valid"),
        ("", False, False, "not a valid"),
        ("net." + "a" * 260, False, False, "not a valid"),
    ],
)
def test_refused_sysctls(name: str, host_network: bool, host_ipc: bool, why: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=why):
        validate_sysctls({name: "1"}, host_network=host_network, host_ipc=host_ipc)


def test_value_with_newline_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid value"):
        validate_sysctls({"net.core.somaxconn": "1\n2"}, host_network=False, host_ipc=False)


def test_safe_set_is_namespaced() -> None:
    assert all(namespace_of(name) in ("net", "ipc") for name in SAFE_SYSCTLS)
    assert "kernel.shm_rmid_forced" in SAFE_SYSCTLS
    assert "kernel.msgmax" not in SAFE_SYSCTLS


def test_apply_needs_the_namespace_pin() -> None:
    with pytest.raises(errors.InvalidArgument, match="net"):
        apply_sysctls({"ipc": Path("/nonexistent")}, {"net.core.somaxconn": "1"})


def test_apply_nothing_touches_nothing() -> None:
    apply_sysctls({}, {})
