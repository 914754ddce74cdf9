"""Seccomp profile choice, the Docker-format resolver and our RuntimeDefault profile."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import seccomp
from cri.oci.security import DEFAULT_CAPABILITIES
from tests.unit.cri.oci.helpers import HOST

Profile = api_pb2.SecurityProfile

BLOCK_HOSTNAME = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
}


class Profiles:
    """A fake profile loader: path → bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.asked: list[str] = []

    def __call__(self, path: str) -> bytes | None:
        self.asked.append(path)
        return self.files.get(path)


def _section(caps: Any = DEFAULT_CAPABILITIES, load: Any = None, **kw: Any) -> Any:
    sc = api_pb2.LinuxContainerSecurityContext(**kw)
    return seccomp.seccomp_section(
        sc,
        caps=caps,
        host=HOST,
        profile_root="/var/lib/kubelet/seccomp",
        load=load or Profiles({}),
    )


def _allowed(profile: dict[str, Any]) -> set[str]:
    """Names an unconditional ALLOW rule covers."""
    return {
        n
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for n in rule["names"]
    }


def test_no_profile_is_unconfined() -> None:
    assert _section() is None


def test_empty_profile_message_is_runtime_default() -> None:
    # critest "should support seccomp default on the container": SecurityProfile{}.
    profile = _section(seccomp=Profile())
    assert profile is not None and profile["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize(
    "kw",
    [
        {"seccomp": Profile(profile_type=Profile.Unconfined)},
        {"seccomp_profile_path": "unconfined"},
        {"privileged": True, "seccomp": Profile()},
        {
            "privileged": True,
            "seccomp": Profile(profile_type=Profile.Localhost, localhost_ref="/p"),
        },
    ],
)
def test_unconfined_cases(kw: dict[str, Any]) -> None:
    assert _section(**kw) is None


@pytest.mark.parametrize("legacy", ["runtime/default", "docker/default"])
def test_legacy_default_path(legacy: str) -> None:
    assert _section(seccomp_profile_path=legacy) == _section(seccomp=Profile())


def test_field_beats_legacy_string() -> None:
    kw = {
        "seccomp": Profile(profile_type=Profile.Unconfined),
        "seccomp_profile_path": "runtime/default",
    }
    assert _section(**kw) is None


def test_localhost_absolute_path() -> None:
    load = Profiles({"/tmp/p/block-host-name.json": json.dumps(BLOCK_HOSTNAME).encode()})
    ref = Profile(profile_type=Profile.Localhost, localhost_ref="/tmp/p/block-host-name.json")
    profile = _section(seccomp=ref, load=load)
    assert profile == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [],
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
    }


@pytest.mark.parametrize(
    ("kw", "path"),
    [
        (
            {"seccomp": Profile(profile_type=Profile.Localhost, localhost_ref="my/p.json")},
            "/var/lib/kubelet/seccomp/my/p.json",
        ),
        (
            {
                "seccomp": Profile(
                    profile_type=Profile.Localhost, localhost_ref="localhost//abs.json"
                )
            },
            "/abs.json",
        ),
        ({"seccomp_profile_path": "localhost/rel.json"}, "/var/lib/kubelet/seccomp/rel.json"),
    ],
)
def test_localhost_path_resolution(kw: dict[str, Any], path: str) -> None:
    load = Profiles({path: json.dumps(BLOCK_HOSTNAME).encode()})
    assert _section(load=load, **kw) is not None
    assert load.asked == [path]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, "does not exist"),
        (b"{not json", "not valid JSON"),
        (b"[]", "no defaultAction"),
        (
            b'{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}',
            "no syscall names",
        ),
        (b'{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}', "no action"),
    ],
)
def test_bad_localhost_profile(data: bytes | None, match: str) -> None:
    load = Profiles({} if data is None else {"/p.json": data})
    ref = Profile(profile_type=Profile.Localhost, localhost_ref="/p.json")
    with pytest.raises(errors.InvalidArgument, match=match):
        _section(seccomp=ref, load=load)


def test_localhost_ref_on_other_kind_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="localhost_ref"):
        _section(seccomp=Profile(profile_type=Profile.RuntimeDefault, localhost_ref="/x"))


def test_empty_localhost_ref_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="without a path"):
        _section(seccomp=Profile(profile_type=Profile.Localhost))


# --- the resolver ---------------------------------------------------------------------------

DOCKER_STYLE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "dropped from the output"},
        {"name": "write", "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {
            "names": ["both"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_KILL"]},
        },
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["notonarm"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["arm64"]}},
        {"names": ["new"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.2"}},
        {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
        },
    ],
}


def _names(profile: dict[str, Any]) -> list[str]:
    return [n for rule in profile["syscalls"] for n in rule["names"]]


def test_resolve_for_unprivileged_x86_64() -> None:
    out = seccomp.resolve_profile(DOCKER_STYLE, caps={"CAP_KILL"}, host=HOST)
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert _names(out) == [
        "read",
        "write",
        "clone3",
        "arch_prctl",
        "notonarm",
        "old",
        "personality",
    ]
    assert out["syscalls"][0] == {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
    assert out["syscalls"][2] == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert out["syscalls"][-1]["args"] == [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
    assert (out["defaultErrnoRet"], out["flags"]) == (1, ["SECCOMP_FILTER_FLAG_LOG"])
    assert "archMap" not in out


def test_resolve_with_sys_admin_on_arm64_new_kernel() -> None:
    host = dataclasses.replace(HOST, machine="aarch64", kernel=(6, 5))
    out = seccomp.resolve_profile(DOCKER_STYLE, caps={"CAP_SYS_ADMIN", "CAP_KILL"}, host=host)
    assert out["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert _names(out) == ["read", "write", "mount", "both", "set_tls", "new", "old", "personality"]


def test_resolve_unknown_machine_gets_no_architectures() -> None:
    host = dataclasses.replace(HOST, machine="riscv64")
    assert seccomp.resolve_profile(DOCKER_STYLE, caps=(), host=host)["architectures"] == []


def test_resolve_keeps_plain_architectures() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}
    out = seccomp.resolve_profile(profile, caps=(), host=HOST)
    assert out == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [],
    }


def test_resolve_bad_min_kernel() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}
        ],
    }
    with pytest.raises(errors.InvalidArgument, match="minKernel"):
        seccomp.resolve_profile(profile, caps=(), host=HOST)


# --- our RuntimeDefault profile -------------------------------------------------------------

RUNC_TOP = {
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
}
RUNC_RULE = {"names", "action", "errnoRet", "args"}
RUNC_ARG = {"index", "value", "valueTwo", "op"}
ACTIONS = {
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
}
OPS = {
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
}


@pytest.mark.parametrize("caps", [(), DEFAULT_CAPABILITIES, ("CAP_SYS_ADMIN",)])
@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_default_profile_is_valid_for_runc(caps: tuple[str, ...], machine: str) -> None:
    host = dataclasses.replace(HOST, machine=machine)
    out = seccomp.resolve_profile(seccomp.default_profile(), caps=caps, host=host)
    json.dumps(out)
    assert set(out) <= RUNC_TOP
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 1
    for rule in out["syscalls"]:
        assert set(rule) <= RUNC_RULE and rule["action"] in ACTIONS
        assert rule["names"] and all(isinstance(n, str) and n.isidentifier() for n in rule["names"])
        for arg in rule.get("args", []):
            assert set(arg) <= RUNC_ARG and arg["op"] in OPS
            assert 0 <= arg["index"] <= 5 and 0 <= arg["value"] < 2**64


def test_default_profile_architectures() -> None:
    out = _section(seccomp=Profile())
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    arm = dataclasses.replace(HOST, machine="aarch64")
    out = seccomp.resolve_profile(seccomp.default_profile(), caps=(), host=arm)
    assert out["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_default_profile_allows_what_containers_need() -> None:
    allowed = _allowed(_section(seccomp=Profile()))
    needed = {
        "read",
        "write",
        "openat",
        "execve",
        "clone",
        "exit_group",
        "futex",
        "mmap",
        "rt_sigaction",
        "wait4",
        "ptrace",
        "chroot",
        "arch_prctl",
    }
    assert needed - allowed == {"clone"}  # clone is allowed, but only with its flags checked


@pytest.mark.parametrize(
    "name",
    [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "sethostname",
        "reboot",
        "kexec_load",
        "init_module",
        "bpf",
        "keyctl",
        "add_key",
        "swapon",
        "pivot_root",
        "open_by_handle_at",
    ],
)
def test_default_profile_denies_privileged_calls(name: str) -> None:
    profile = _section(seccomp=Profile())
    assert name not in _names(profile)


def test_sys_admin_unlocks_its_calls_and_plain_clone() -> None:
    caps = (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")
    profile = _section(caps=caps, seccomp=Profile())
    allowed = _allowed(profile)
    assert {"mount", "sethostname", "setns", "unshare", "clone", "clone3"} <= allowed
    assert not [r for r in profile["syscalls"] if r["action"] != "SCMP_ACT_ALLOW"]


def test_without_sys_admin_clone_is_flag_checked_and_clone3_is_enosys() -> None:
    profile = _section(seccomp=Profile())
    (clone,) = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    (arg,) = clone["args"]
    assert arg["op"] == "SCMP_CMP_MASKED_EQ" and arg["valueTwo"] == 0
    assert arg["value"] == 0x7E020000  # CLONE_NEW{NS,UTS,IPC,USER,PID,NET,CGROUP}
    (clone3,) = [r for r in profile["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


@pytest.mark.parametrize(
    ("cap", "calls"),
    [
        ("CAP_SYS_PTRACE", {"kcmp", "process_madvise", "pidfd_getfd"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
        ("CAP_BPF", {"bpf"}),
    ],
)
def test_capability_gated_calls(cap: str, calls: set[str]) -> None:
    assert not calls & _allowed(_section(seccomp=Profile()))
    assert calls <= _allowed(_section(caps=(*DEFAULT_CAPABILITIES, cap), seccomp=Profile()))


def test_socket_is_allowed_except_af_alg_and_af_vsock() -> None:
    rules = [r for r in _section(seccomp=Profile())["syscalls"] if r["names"] == ["socket"]]
    conditions = [(r["args"][0]["op"], r["args"][0]["value"]) for r in rules]
    assert conditions == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
    # One condition per rule: runc ORs conditions on the same argument.
    assert all(len(r["args"]) == 1 for r in rules)


def test_default_profile_calls_are_each_listed_once_per_condition() -> None:
    raw = seccomp.default_profile()
    unconditional = [
        n
        for r in raw["syscalls"]
        if not (r.get("includes") or r.get("excludes") or r.get("args"))
        for n in r["names"]
    ]
    assert len(unconditional) == len(set(unconditional))
    assert len(unconditional) > 300
