"""build_spec end to end: the pieces put together, and the rules that span them."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import Rlimit, build_spec
from cri.oci.security import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from tests.unit.cri.oci.helpers import (
    HOST,
    FakeDeviceProbe,
    container_config,
    inputs,
    node,
    with_security,
)

Profile = api_pb2.SecurityProfile


def _linux_config(
    sc: dict[str, Any] | None = None, res: dict[str, Any] | None = None, **kw: Any
) -> api_pb2.ContainerConfig:
    linux = api_pb2.LinuxContainerConfig(
        security_context=api_pb2.LinuxContainerSecurityContext(**(sc or {}))
    )
    if res is not None:
        linux.resources.CopyFrom(api_pb2.LinuxContainerResources(**res))
    kw.setdefault("command", ["sleep", "1"])
    return container_config(linux=linux, **kw)


def _sandbox(
    privileged: bool = False, hostname: str = "pod-host", **kw: Any
) -> api_pb2.PodSandboxConfig:
    sc = api_pb2.LinuxSandboxSecurityContext(privileged=privileged, **kw)
    return api_pb2.PodSandboxConfig(
        hostname=hostname,
        metadata=api_pb2.PodSandboxMetadata(name="pod", namespace="ns", uid="uid-1"),
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=sc, sysctls={"net.core.somaxconn": "1024"}
        ),
    )


def test_plain_container() -> None:
    config = _linux_config(
        args=["30"],
        command=["sleep"],
        tty=True,
        working_dir="/srv",
        envs=[api_pb2.KeyValue(key="MODE", value=b"test")],
        annotations={
            "io.kubernetes.container.hash": "abc",
            "io.kubernetes.cri.sandbox-id": "spoofed",
        },
    )
    spec = build_spec(inputs(config))
    json.dumps(spec)  # config.json must serialise
    assert spec["ociVersion"] == "1.0.2"
    assert set(spec) == {"ociVersion", "process", "root", "mounts", "annotations", "linux"}
    proc = spec["process"]
    assert proc["args"] == ["sleep", "30"] and proc["terminal"] is True and proc["cwd"] == "/srv"
    assert proc["env"] == ["PATH=/bin", "HOSTNAME=pod-host", "MODE=test"]
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert proc["capabilities"]["bounding"] == sorted(
        DEFAULT_CAPABILITIES, key=ALL_CAPABILITIES.index
    )
    assert proc["noNewPrivileges"] is False
    assert "oomScoreAdj" not in proc and "apparmorProfile" not in proc and "rlimits" not in proc
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["annotations"] == {
        "io.kubernetes.container.hash": "abc",
        "io.kubernetes.cri.sandbox-id": "5a4d60",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.sandbox-namespace": "ns",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.container-name": "ctr",
        "io.kubernetes.cri.image-name": "registry.example/busybox:1",
    }
    linux = spec["linux"]
    assert linux["cgroupsPath"] == "berth/pod/c0ffee"
    assert [n["type"] for n in linux["namespaces"]] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert linux["devices"] == []
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert "seccomp" not in linux and "sysctl" not in linux and "rootfsPropagation" not in linux


def test_hostname_only_with_a_new_uts_namespace() -> None:
    assert "hostname" not in build_spec(inputs())
    spec = build_spec(inputs(namespaces={"uts": None, "pid": None}))
    assert spec["hostname"] == "pod-host"


def test_host_network_pod_uses_the_node_hostname() -> None:
    spec = build_spec(inputs(sandbox_config=_sandbox(hostname=""), namespaces={"pid": None}))
    assert "HOSTNAME=node-1" in spec["process"]["env"]
    assert "hostname" not in spec


def test_cgroup_namespace_only_on_v2_and_unprivileged() -> None:
    def kinds(**kw: Any) -> list[str]:
        return [n["type"] for n in build_spec(inputs(**kw))["linux"]["namespaces"]]

    assert "cgroup" in kinds(cgroup_v2=True)
    assert "cgroup" not in kinds(cgroup_v2=False)
    assert "cgroup" not in kinds(config=with_security(privileged=True), sandbox_privileged=True)


def test_image_config_drives_the_process() -> None:
    image = {
        "config": {
            "Entrypoint": ["/entry"],
            "Cmd": ["run"],
            "WorkingDir": "/app",
            "User": "www-data",
            "Env": ["X=1"],
        }
    }
    spec = build_spec(inputs(container_config(), image_config=image))
    proc = spec["process"]
    assert proc["args"] == ["/entry", "run"] and proc["cwd"] == "/app"
    assert proc["user"] == {"uid": 33, "gid": 33, "additionalGids": [29, 33]}
    assert proc["env"][-1] == "X=1"


def test_image_config_without_config_object() -> None:
    spec = build_spec(inputs(image_config={"config": None}))
    assert spec["process"]["args"] == ["sleep", "1"]
    with pytest.raises(errors.InvalidArgument, match="no command"):
        build_spec(inputs(container_config(), image_config={}))
    with pytest.raises(errors.InvalidArgument, match="not an object"):
        build_spec(inputs(image_config={"config": ["x"]}))


def test_security_context_fields() -> None:
    sc = {
        "readonly_rootfs": True,
        "no_new_privs": True,
        "masked_paths": ["/bin/ls"],
        "readonly_paths": ["/tmp"],
    }
    spec = build_spec(inputs(_linux_config(sc)))
    assert spec["root"]["readonly"] is True and spec["process"]["noNewPrivileges"] is True
    assert (spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"]) == (["/bin/ls"], ["/tmp"])


def test_privileged_container() -> None:
    probe = FakeDeviceProbe(host=[node("/dev/null", 1, 3), node("/dev/kvm", 10, 232)])
    sc = {
        "privileged": True,
        "seccomp": Profile(),
        "capabilities": api_pb2.Capability(drop_capabilities=["ALL"]),
    }
    host_caps = ("CAP_CHOWN", "CAP_SYS_ADMIN")
    host = dataclasses.replace(HOST, capabilities=host_caps)
    inp = inputs(_linux_config(sc), sandbox_privileged=True, device_probe=probe, host=host)
    spec = build_spec(inp)
    assert spec["process"]["capabilities"]["effective"] == list(host_caps)
    linux = spec["linux"]
    assert "seccomp" not in linux
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    assert [d["path"] for d in linux["devices"]] == ["/dev/null", "/dev/kvm"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys["options"][-1] == "rw"


def test_privileged_container_in_unprivileged_pod() -> None:
    with pytest.raises(errors.InvalidArgument, match="privileged"):
        build_spec(inputs(with_security(privileged=True), sandbox_privileged=False))


def test_devices_in_the_spec() -> None:
    probe = FakeDeviceProbe(nodes={"/dev/fuse": [node("/dev/fuse", 10, 229)]})
    config = _linux_config(
        devices=[
            api_pb2.Device(host_path="/dev/fuse", container_path="/dev/fuse", permissions="rw")
        ]
    )
    linux = build_spec(inputs(config, device_probe=probe))["linux"]
    assert linux["devices"][0]["path"] == "/dev/fuse"
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
    ]


@pytest.mark.parametrize(("floor", "expected"), [(None, -997), (0, 0), (-999, -997)])
def test_oom_score_adj(floor: int | None, expected: int) -> None:
    config = _linux_config(res={"oom_score_adj": -997, "memory_limit_in_bytes": 1 << 26})
    spec = build_spec(inputs(config, oom_score_adj_floor=floor))
    assert spec["process"]["oomScoreAdj"] == expected
    assert spec["linux"]["resources"]["memory"] == {"limit": 1 << 26, "swap": 1 << 26}


def test_seccomp_default_follows_the_final_capabilities() -> None:
    def allowed(spec: dict[str, Any]) -> set[str]:
        return {
            n
            for r in spec["linux"]["seccomp"]["syscalls"]
            if not r.get("args") and r["action"] == "SCMP_ACT_ALLOW"
            for n in r["names"]
        }

    plain = build_spec(inputs(_linux_config({"seccomp": Profile()})))
    admin = build_spec(
        inputs(
            _linux_config(
                {
                    "seccomp": Profile(),
                    "capabilities": api_pb2.Capability(add_capabilities=["SYS_ADMIN"]),
                }
            )
        )
    )
    assert "sethostname" not in allowed(plain) and "sethostname" in allowed(admin)
    chroot_dropped = build_spec(
        inputs(
            _linux_config(
                {
                    "seccomp": Profile(),
                    "capabilities": api_pb2.Capability(drop_capabilities=["SYS_CHROOT"]),
                }
            )
        )
    )
    assert "chroot" in allowed(plain) and "chroot" not in allowed(chroot_dropped)


def test_localhost_seccomp_through_the_loader() -> None:
    rule = {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}).encode()
    ref = Profile(profile_type=Profile.Localhost, localhost_ref="/profiles/block-chmod.json")
    inp = inputs(
        _linux_config({"seccomp": ref}),
        load_seccomp_profile={"/profiles/block-chmod.json": profile}.get,
    )
    assert build_spec(inp)["linux"]["seccomp"]["syscalls"] == [rule]


MAPPING = [api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)]
USERNS = api_pb2.NamespaceOption(
    userns_options=api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
)


def test_user_namespace_pod() -> None:
    spec = build_spec(
        inputs(
            sandbox_config=_sandbox(namespace_options=USERNS),
            namespaces={"network": "/ns/net", "user": "/ns/user", "pid": None},
        )
    )
    linux = spec["linux"]
    assert {"type": "user", "path": "/ns/user"} in linux["namespaces"]
    assert (
        linux["uidMappings"]
        == linux["gidMappings"]
        == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    )
    # No paths given in a user-namespaced pod: procMount Unmasked.
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    sys = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys["type"] == "sysfs"


def test_user_namespace_with_host_network_binds_sys() -> None:
    spec = build_spec(
        inputs(sandbox_config=_sandbox(namespace_options=USERNS), namespaces={"pid": None})
    )
    sys = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert (sys["type"], sys["source"]) == ("bind", "/sys")


def test_user_namespace_without_mappings_is_rejected() -> None:
    empty = api_pb2.NamespaceOption(userns_options=api_pb2.UserNamespace(mode=api_pb2.POD))
    with pytest.raises(errors.InvalidArgument, match="mapping"):
        build_spec(inputs(sandbox_config=_sandbox(namespace_options=empty)))


def test_sysctls_for_a_new_network_namespace_only() -> None:
    assert "sysctl" not in build_spec(inputs(sandbox_config=_sandbox()))["linux"]
    spec = build_spec(inputs(sandbox_config=_sandbox(), namespaces={"network": None}))
    assert spec["linux"]["sysctl"] == {"net.core.somaxconn": "1024"}


def test_bidirectional_mount_sets_rootfs_propagation() -> None:
    mount = api_pb2.Mount(
        container_path="/m", host_path="/h", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL
    )
    spec = build_spec(inputs(_linux_config(mounts=[mount])))
    assert spec["linux"]["rootfsPropagation"] == "rshared"


def test_apparmor_and_rlimits() -> None:
    spec = build_spec(
        inputs(apparmor_enabled=True, rlimits=[Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=4096)])
    )
    assert spec["process"]["apparmorProfile"] == "berth-default"
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]


def test_build_spec_is_pure() -> None:
    inp = inputs(_linux_config({"seccomp": Profile(), "run_as_username": "www-data"}))
    before = copy.deepcopy(inp.image_config), inp.config.SerializeToString()
    assert build_spec(inp) == build_spec(inp)
    assert (copy.deepcopy(inp.image_config), inp.config.SerializeToString()) == before


def test_errors_name_the_container_and_its_id() -> None:
    with pytest.raises(errors.InvalidArgument, match=r"^container 'ctr' \(c0ffee\): no command"):
        build_spec(inputs(container_config(), image_config={}))
