"""The mount list: kernel filesystems, CRI binds, pod files, image volumes, ordering."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import mounts
from cri.oci.inputs import PodFilePaths, SpecInputs
from tests.unit.cri.oci.helpers import container_config, inputs

KERNEL = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
POD_FILES = ["/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/dev/shm"]


def _plan(inp: SpecInputs, privileged: bool = False, sys_bind: bool = False) -> mounts.MountPlan:
    return mounts.build_mounts(inp, privileged=privileged, sys_bind=sys_bind)


def _with_mounts(*cri: api_pb2.Mount, **sc: Any) -> api_pb2.ContainerConfig:
    security = api_pb2.LinuxContainerSecurityContext(**sc)
    return container_config(
        command=["true"],
        mounts=list(cri),
        linux=api_pb2.LinuxContainerConfig(security_context=security),
    )


def _dests(plan: mounts.MountPlan) -> list[str]:
    return [m["destination"] for m in plan.mounts]


def _by_dest(plan: mounts.MountPlan) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in plan.mounts}


def test_default_mount_set() -> None:
    plan = _plan(inputs())
    assert _dests(plan) == [d for d in KERNEL if d != "/dev/shm"] + POD_FILES
    m = _by_dest(plan)
    assert m["/proc"] == {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    }
    assert m["/sys"]["options"][-1] == "ro" and m["/sys/fs/cgroup"]["options"][-1] == "ro"
    assert m["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/run/berth/pod/hosts",
        "options": ["rbind", "rprivate", "rw"],
    }
    assert m["/dev/shm"]["source"] == "/run/berth/pod/shm"
    assert plan.rootfs_propagation is None


def test_readonly_rootfs_makes_pod_files_readonly_but_not_shm() -> None:
    m = _by_dest(_plan(inputs(_with_mounts(readonly_rootfs=True))))
    assert [m[d]["options"][-1] for d in POD_FILES] == ["ro", "ro", "ro", "rw"]


def test_no_pod_files_keeps_a_private_shm_tmpfs() -> None:
    plan = _plan(inputs(pod_files=None))
    assert _dests(plan) == KERNEL
    assert _by_dest(plan)["/dev/shm"]["type"] == "tmpfs"


def test_host_ipc_binds_the_hosts_shm() -> None:
    inp = inputs(namespaces={"network": None, "pid": None})
    shm = _by_dest(_plan(inp))["/dev/shm"]
    assert (shm["type"], shm["source"]) == ("bind", "/dev/shm")


def test_pod_file_skipped_when_a_cri_mount_covers_it() -> None:
    # The kubelet mounts its own managed /etc/hosts.
    hosts = api_pb2.Mount(
        container_path="/etc/hosts", host_path="/var/lib/kubelet/pods/x/etc-hosts"
    )
    plan = _plan(inputs(_with_mounts(hosts)))
    found = [m for m in plan.mounts if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in found] == ["/var/lib/kubelet/pods/x/etc-hosts"]


def test_cri_mount_replaces_kernel_mount_and_dev_subtree() -> None:
    dev = api_pb2.Mount(container_path="/dev", host_path="/dev")
    plan = _plan(inputs(_with_mounts(dev), pod_files=None))
    assert _dests(plan) == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


def test_binds_are_sorted_parents_first_stably() -> None:
    cri = [
        api_pb2.Mount(container_path="/data/a/b", host_path="/h/ab"),
        api_pb2.Mount(container_path="/data/", host_path="/h/data"),
        api_pb2.Mount(container_path="/etc", host_path="/h/etc"),
        api_pb2.Mount(container_path="/data/a", host_path="/h/a"),
        api_pb2.Mount(container_path="/zz", host_path="/h/zz"),
    ]
    plan = _plan(inputs(_with_mounts(*cri), pod_files=None))
    binds = _dests(plan)[len(KERNEL) :]
    assert binds == ["/data", "/etc", "/zz", "/data/a", "/data/a/b"]
    # Kernel filesystems always come first.
    assert _dests(plan)[: len(KERNEL)] == KERNEL


def test_pod_files_sort_after_a_cri_mount_of_etc() -> None:
    etc = api_pb2.Mount(container_path="/etc", host_path="/h/etc")
    dests = _dests(_plan(inputs(_with_mounts(etc))))
    assert dests.index("/etc") < dests.index("/etc/hosts")


@pytest.mark.parametrize(
    ("propagation", "option", "rootfs"),
    [
        (api_pb2.PROPAGATION_PRIVATE, "rprivate", None),
        (api_pb2.PROPAGATION_HOST_TO_CONTAINER, "rslave", "rslave"),
        (api_pb2.PROPAGATION_BIDIRECTIONAL, "rshared", "rshared"),
    ],
)
def test_propagation(propagation: int, option: str, rootfs: str | None) -> None:
    m = api_pb2.Mount(container_path="/mnt", host_path="/h", propagation=propagation)  # type: ignore[arg-type]
    plan = _plan(inputs(_with_mounts(m)))
    assert _by_dest(plan)["/mnt"]["options"] == ["rbind", option, "rw"]
    assert plan.rootfs_propagation == rootfs


def test_shared_wins_over_slave_for_the_rootfs() -> None:
    a = api_pb2.Mount(
        container_path="/a", host_path="/h", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL
    )
    b = api_pb2.Mount(
        container_path="/b", host_path="/h", propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER
    )
    assert _plan(inputs(_with_mounts(b, a))).rootfs_propagation == "rshared"


def test_readonly_and_recursive_readonly() -> None:
    ro = api_pb2.Mount(container_path="/ro", host_path="/h", readonly=True)
    rro = api_pb2.Mount(
        container_path="/rro", host_path="/h", readonly=True, recursive_read_only=True
    )
    m = _by_dest(_plan(inputs(_with_mounts(ro, rro), recursive_read_only_supported=True)))
    assert m["/ro"]["options"] == ["rbind", "rprivate", "ro"]
    assert m["/rro"]["options"] == ["rbind", "rprivate", "rro"]


@pytest.mark.parametrize(
    ("mount", "supported", "match"),
    [
        (
            api_pb2.Mount(
                container_path="/x", host_path="/h", readonly=True, recursive_read_only=True
            ),
            False,
            "does not support",
        ),
        (
            api_pb2.Mount(container_path="/x", host_path="/h", recursive_read_only=True),
            True,
            "conflicts with read-write",
        ),
        (
            api_pb2.Mount(
                container_path="/x",
                host_path="/h",
                readonly=True,
                recursive_read_only=True,
                propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
            ),
            True,
            "private propagation",
        ),
        (api_pb2.Mount(container_path="rel", host_path="/h"), True, "not absolute"),
        (api_pb2.Mount(container_path="/x"), True, "no host path"),
    ],
)
def test_rejected_mounts(mount: api_pb2.Mount, supported: bool, match: str) -> None:
    inp = inputs(_with_mounts(mount), recursive_read_only_supported=supported)
    with pytest.raises(errors.InvalidArgument, match=match):
        _plan(inp)


def test_image_volume_mount_uses_the_prepared_path_read_only() -> None:
    vol = api_pb2.Mount(
        container_path="/models", readonly=True, image=api_pb2.ImageSpec(image="reg/models:1")
    )
    inp = inputs(_with_mounts(vol), image_volume_mounts={"/models": "/var/lib/berth/iv/abc"})
    assert _by_dest(_plan(inp))["/models"] == {
        "destination": "/models",
        "type": "bind",
        "source": "/var/lib/berth/iv/abc",
        "options": ["rbind", "rprivate", "ro"],
    }


@pytest.mark.parametrize(
    ("readonly", "prepared", "match"),
    [(False, {"/models": "/p"}, "must be read-only"), (True, {}, "was not prepared")],
)
def test_image_volume_mount_errors(readonly: bool, prepared: dict[str, str], match: str) -> None:
    vol = api_pb2.Mount(
        container_path="/models", readonly=readonly, image=api_pb2.ImageSpec(image="i")
    )
    with pytest.raises(errors.InvalidArgument, match=match):
        _plan(inputs(_with_mounts(vol), image_volume_mounts=prepared))


def test_image_config_volumes_unless_a_cri_mount_covers_them() -> None:
    cri = api_pb2.Mount(container_path="/var/lib/data", host_path="/pv")
    volumes = {"/var/lib/data": "/state/vol/1", "/cache": "/state/vol/2"}
    m = _by_dest(_plan(inputs(_with_mounts(cri), image_config_volumes=volumes)))
    assert m["/var/lib/data"]["source"] == "/pv"
    assert m["/cache"] == {
        "destination": "/cache",
        "type": "bind",
        "source": "/state/vol/2",
        "options": ["rbind", "rprivate", "rw"],
    }


def test_privileged_gets_writable_sys_and_cgroup() -> None:
    m = _by_dest(_plan(inputs(), privileged=True))
    assert m["/sys"]["options"][-1] == "rw" and m["/sys/fs/cgroup"]["options"][-1] == "rw"


@pytest.mark.parametrize(("rro", "last"), [(False, "ro"), (True, "rro")])
def test_sys_bind_for_host_network_in_a_user_namespace(rro: bool, last: str) -> None:
    inp = dataclasses.replace(inputs(), recursive_read_only_supported=rro)
    sys = _by_dest(_plan(inp, sys_bind=True))["/sys"]
    assert (sys["type"], sys["source"], sys["options"][0], sys["options"][-1]) == (
        "bind",
        "/sys",
        "rbind",
        last,
    )


def test_partial_pod_files() -> None:
    inp = inputs(pod_files=PodFilePaths(resolv_conf="/r"))
    assert _dests(_plan(inp))[len(KERNEL) - 1 :] == ["/sys/fs/cgroup", "/etc/resolv.conf"]
