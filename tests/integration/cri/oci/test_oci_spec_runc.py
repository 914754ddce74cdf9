"""Specs from build_spec, run by the real runc: what the process inside actually gets.

Each case builds a busybox-static rootfs, writes the generated config.json, and runs it with
`runc run` in new namespaces and a relative cgroupsPath (so runc places the cgroup below its
own, in every hierarchy). The container's output is checked, then the test checks that runc
left no cgroup behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cri.api.v1 import api_pb2
from cri.oci import PodFilePaths, SpecInputs, build_spec, detect_host
from cri.oci.security import DEFAULT_CAPABILITIES, capability_mask

pytestmark = [pytest.mark.root, pytest.mark.runc]

Profile = api_pb2.SecurityProfile
APPLETS = ("sh", "id", "grep", "cat", "touch", "hostname", "wc", "echo", "true")
PASSWD = "root:x:0:0:root:/root:/bin/sh\ntester:x:1234:2345::/:/bin/sh\n"
GROUP = "root:x:0:\ntester:x:2345:\nextra:x:3456:tester\n"
CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


@dataclass
class Bundle:
    path: Path
    runc_root: Path
    pod_files: PodFilePaths

    def read_file(self, path: str) -> bytes | None:
        try:
            return (self.path / "rootfs" / path.lstrip("/")).read_bytes()
        except FileNotFoundError:
            return None


@pytest.fixture
def bundle() -> Iterator[Bundle]:
    # Not tmp_path: pytest makes its directories 0700, which a user-namespaced root (a high
    # host uid) cannot traverse to reach the rootfs.
    top = Path(tempfile.mkdtemp(prefix="berth-oci-"))
    top.chmod(0o755)
    try:
        yield _make_bundle(top)
    finally:
        shutil.rmtree(top)


def _make_bundle(top: Path) -> Bundle:
    rootfs = top / "bundle" / "rootfs"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.link(rootfs / "bin" / "busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    # Mount points exist up front, as in real images: root in a user namespace could not
    # create them in a rootfs owned by the host's root.
    for name in ("hostname", "resolv.conf", "hosts"):
        (rootfs / "etc" / name).touch()
    pod = top / "pod"
    pod.mkdir()
    for name, text in (("hostname", "pod-host\n"), ("resolv.conf", ""), ("hosts", "")):
        (pod / name).write_text(text)
    files = PodFilePaths(
        hostname=str(pod / "hostname"),
        resolv_conf=str(pod / "resolv.conf"),
        hosts=str(pod / "hosts"),
    )
    return Bundle(path=top / "bundle", runc_root=top / "runc", pod_files=files)


def _own_cgroup_dirs(name: str) -> list[Path]:
    """Where runc puts a relative cgroupsPath `name`: below our cgroup in each hierarchy."""
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mount = "unified" if not controllers else controllers.split(",")[0].removeprefix("name=")
        base = Path("/sys/fs/cgroup") if CGROUP_V2 else Path("/sys/fs/cgroup") / mount
        dirs.append(base / path.lstrip("/") / name)
    return dirs


def _run(
    bundle: Bundle,
    sc: dict[str, Any],
    script: str,
    sandbox: api_pb2.PodSandboxConfig | None = None,
    **extra: Any,
) -> subprocess.CompletedProcess[str]:
    cid = "berth-oci-" + uuid.uuid4().hex[:12]
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="probe"),
        command=["sh", "-c", script],
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(**sc),
            resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=64 << 20),
        ),
    )
    inputs = SpecInputs(
        container_id=cid,
        sandbox_id="pod",
        config=config,
        sandbox_config=sandbox or api_pb2.PodSandboxConfig(hostname="pod-host"),
        image_config={"config": {}},
        rootfs="rootfs",
        namespaces={"pid": None, "network": None, "ipc": None, "uts": None},
        pod_files=bundle.pod_files,
        cgroups_path=cid,
        sandbox_privileged=bool(sc.get("privileged")),
        read_file=bundle.read_file,
        oom_score_adj_floor=int(Path("/proc/self/oom_score_adj").read_text()),
        cgroup_v2=CGROUP_V2,
        host=detect_host(cgroup_v2=CGROUP_V2),
        **extra,
    )
    (bundle.path / "config.json").write_text(json.dumps(build_spec(inputs)))
    runc = ["runc", "--root", str(bundle.runc_root)]
    try:
        return subprocess.run(
            [*runc, "run", "--bundle", str(bundle.path), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([*runc, "delete", "--force", cid], capture_output=True, timeout=60)
        leftovers = [d for d in _own_cgroup_dirs(cid) if d.exists()]
        assert not leftovers, f"runc left cgroups behind: {leftovers}"


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_restricted_user_readonly_rootfs_runtime_default(bundle: Bundle) -> None:
    sc = {
        "run_as_username": "tester",
        "readonly_rootfs": True,
        "supplemental_groups": [777],
        "seccomp": Profile(),
    }
    script = "grep Seccomp: /proc/self/status; id -u; id -g; id -G; cat /etc/hostname; touch /x"
    result = _run(bundle, sc, script)
    assert result.returncode == 1
    seccomp, uid, gid, groups, hostname = result.stdout.splitlines()
    assert (seccomp, uid, gid, hostname) == ("Seccomp:\t2", "1234", "2345", "pod-host")
    assert sorted(groups.split(), key=int) == ["777", "2345", "3456"]
    assert "Read-only file system" in result.stderr


def test_root_capabilities_and_masked_paths(bundle: Bundle) -> None:
    caps = api_pb2.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["NET_RAW"])
    script = (
        "grep CapEff /proc/self/status; wc -c < /proc/keys; wc -c < /proc/timer_list; "
        "echo x 2>/dev/null > /proc/sys/kernel/domainname || echo proc-sys-readonly; hostname"
    )
    lines = _lines(_run(bundle, {"capabilities": caps, "seccomp": Profile()}, script))
    expected = (set(DEFAULT_CAPABILITIES) - {"CAP_NET_RAW"}) | {"CAP_NET_ADMIN"}
    assert lines[0] == f"CapEff:\t{capability_mask(expected):016x}"
    assert [n.strip() for n in lines[1:3]] == ["0", "0"]
    assert lines[3:] == ["proc-sys-readonly", "pod-host"]


def test_drop_all_capabilities(bundle: Bundle) -> None:
    caps = api_pb2.Capability(drop_capabilities=["ALL"])
    lines = _lines(
        _run(bundle, {"capabilities": caps}, "grep -E 'CapBnd|Seccomp:' /proc/self/status")
    )
    assert lines == ["CapBnd:\t0000000000000000", "Seccomp:\t0"]


@pytest.mark.parametrize(
    ("profile", "settable"),
    [
        (Profile(), True),  # RuntimeDefault allows sethostname once SYS_ADMIN is there
        (Profile(profile_type=Profile.Unconfined), True),
        (Profile(profile_type=Profile.Localhost, localhost_ref="block-host-name.json"), False),
    ],
)
def test_sethostname_with_sys_admin(
    bundle: Bundle, profile: api_pb2.SecurityProfile, settable: bool
) -> None:
    block = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
    }
    profiles = bundle.path.parent / "seccomp"
    profiles.mkdir()
    (profiles / "block-host-name.json").write_text(json.dumps(block))
    sc = {"seccomp": profile, "capabilities": api_pb2.Capability(add_capabilities=["SYS_ADMIN"])}
    result = _run(bundle, sc, "hostname changed && hostname", seccomp_profile_root=str(profiles))
    if settable:
        assert _lines(result) == ["changed"]
    else:
        assert result.returncode != 0 and "Operation not permitted" in result.stderr


def test_runtime_default_without_sys_admin_blocks_sethostname(bundle: Bundle) -> None:
    result = _run(bundle, {"seccomp": Profile()}, "hostname changed")
    assert result.returncode != 0 and "Operation not permitted" in result.stderr


def test_privileged(bundle: Bundle) -> None:
    script = "grep -E 'CapEff|Seccomp:' /proc/self/status; echo x > /proc/sys/kernel/domainname"
    result = _run(bundle, {"privileged": True, "seccomp": Profile()}, script)
    host_caps = detect_host(cgroup_v2=CGROUP_V2).capabilities
    assert _lines(result) == [f"CapEff:\t{capability_mask(host_caps):016x}", "Seccomp:\t0"]


def test_pod_user_namespace(bundle: Bundle) -> None:
    mapping = [api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)]
    userns = api_pb2.UserNamespace(mode=api_pb2.POD, uids=mapping, gids=mapping)
    sandbox = api_pb2.PodSandboxConfig(
        hostname="pod-host",
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(userns_options=userns)
            )
        ),
    )
    result = _run(bundle, {"seccomp": Profile()}, "cat /proc/self/uid_map; id -u", sandbox)
    assert [line.split() for line in _lines(result)] == [["0", "100000", "65536"], ["0"]]
