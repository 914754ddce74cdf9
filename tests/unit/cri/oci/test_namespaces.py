"""linux.namespaces, user-namespace mappings and per-container sysctls."""

from __future__ import annotations

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import namespaces


def _types(section: list[dict[str, str]]) -> list[tuple[str, str | None]]:
    return [(n["type"], n.get("path")) for n in section]


def test_namespaces_as_given_plus_a_new_mount_namespace() -> None:
    given = {"network": "/ns/net", "ipc": "/ns/ipc", "uts": "/ns/uts", "pid": None}
    section = namespaces.namespaces_section(given, userns=False, cgroup_ns=False)
    assert _types(section) == [
        ("pid", None),
        ("network", "/ns/net"),
        ("ipc", "/ns/ipc"),
        ("uts", "/ns/uts"),
        ("mount", None),
    ]
    assert section[0] == {"type": "pid"}


def test_host_namespaces_are_left_out() -> None:
    section = namespaces.namespaces_section({"pid": "/ns/pid"}, userns=False, cgroup_ns=False)
    assert _types(section) == [("pid", "/ns/pid"), ("mount", None)]


def test_user_and_cgroup_namespaces() -> None:
    section = namespaces.namespaces_section({"user": "/ns/user"}, userns=True, cgroup_ns=True)
    assert _types(section) == [("mount", None), ("user", "/ns/user"), ("cgroup", None)]
    section = namespaces.namespaces_section({}, userns=True, cgroup_ns=False)
    assert _types(section) == [("mount", None), ("user", None)]
    # A user namespace is only used with mappings (pod in mode POD).
    section = namespaces.namespaces_section({"user": "/ns/user"}, userns=False, cgroup_ns=False)
    assert _types(section) == [("mount", None)]


def test_unknown_namespace_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="net"):
        namespaces.namespaces_section({"net": None}, userns=False, cgroup_ns=False)


MAPPING = [api_pb2.IDMapping(container_id=0, host_id=1000, length=100000)]


def test_pod_userns_mappings() -> None:
    opts = api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
    uids, gids = namespaces.userns_mappings(opts) or ([], [])
    assert uids == gids == [{"containerID": 0, "hostID": 1000, "size": 100000}]


def test_node_userns_has_no_mappings() -> None:
    assert namespaces.userns_mappings(None) is None
    assert namespaces.userns_mappings(api_pb2.UserNamespace(mode=api_pb2.NODE)) is None


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        (api_pb2.UserNamespace(mode=api_pb2.POD), "exactly one uid mapping, got 0"),
        (api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING), "exactly one gid mapping, got 0"),
        (
            api_pb2.UserNamespace(
                mode=api_pb2.POD,
                uids=[*MAPPING, api_pb2.IDMapping(container_id=0, host_id=2000, length=100000)],
                gids=MAPPING,
            ),
            "exactly one uid mapping, got 2",
        ),
        (
            api_pb2.UserNamespace(
                mode=api_pb2.POD,
                uids=[api_pb2.IDMapping(container_id=1, host_id=1000, length=100000)],
                gids=MAPPING,
            ),
            "container id 0",
        ),
        (
            api_pb2.UserNamespace(
                mode=api_pb2.POD, uids=[api_pb2.IDMapping(host_id=5)], gids=MAPPING
            ),
            "container id 0",
        ),
        (api_pb2.UserNamespace(mode=api_pb2.CONTAINER), "CONTAINER is not supported"),
        (api_pb2.UserNamespace(mode=api_pb2.TARGET), "TARGET is not supported"),
    ],
)
def test_rejected_userns(opts: api_pb2.UserNamespace, match: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=match):
        namespaces.userns_mappings(opts)


def _configs(
    pod: api_pb2.UserNamespace | None, ctr: api_pb2.UserNamespace | None
) -> tuple[api_pb2.PodSandboxConfig, api_pb2.ContainerConfig]:
    pod_ns = api_pb2.NamespaceOption(userns_options=pod) if pod else api_pb2.NamespaceOption()
    ctr_ns = api_pb2.NamespaceOption(userns_options=ctr) if ctr else api_pb2.NamespaceOption()
    sandbox = api_pb2.PodSandboxConfig(
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=pod_ns)
        )
    )
    container = api_pb2.ContainerConfig(
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=ctr_ns)
        )
    )
    return sandbox, container


def test_container_must_repeat_the_pods_userns() -> None:
    pod = api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
    assert namespaces.pod_userns(*_configs(pod, pod)) is not None
    assert namespaces.pod_userns(*_configs(pod, None)) is not None
    assert namespaces.pod_userns(*_configs(None, None)) is None
    with pytest.raises(errors.InvalidArgument, match="differ"):
        namespaces.pod_userns(*_configs(pod, api_pb2.UserNamespace(mode=api_pb2.NODE)))


def test_sysctls_only_for_namespaces_the_container_creates() -> None:
    sysctls = {
        "net.ipv4.ip_forward": "1",
        "net/ipv4/conf/eth0.100/forwarding": "1",
        "kernel.shm_rmid_forced": "1",
        "kernel.msgmax": "8192",
        "vm.swappiness": "10",
    }
    new_net = {"network": None, "ipc": "/ns/ipc"}
    assert namespaces.container_sysctls(sysctls, new_net) == {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.eth0/100.forwarding": "1",
    }
    new_ipc = {"ipc": None}  # network is the host's: never
    assert namespaces.container_sysctls(sysctls, new_ipc) == {
        "kernel.shm_rmid_forced": "1",
        "kernel.msgmax": "8192",
    }
    assert namespaces.container_sysctls(sysctls, {"network": "/ns/net", "ipc": "/ns/ipc"}) == {}
