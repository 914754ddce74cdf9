"""linux.seccomp: which profile a container gets, and turning a profile into what runc reads.

Profiles are written in the Docker/containerd JSON format: an `archMap` from a native
architecture to the ones it also runs, and syscall rules that apply only when `includes`
(every listed capability, one of the listed architectures, a minimum kernel) holds and
`excludes` (any listed capability or architecture) does not. runc 1.1 understands none of
that, so `resolve_profile` evaluates those conditions for one container — its bounding
capabilities, the host's architecture and kernel — and emits a plain OCI profile. Our
RuntimeDefault profile (`seccomp_default.json`) and Localhost profiles go the same way.

Which profile: none for a privileged container (critest: a privileged container ignores a
profile that blocks sethostname); the `seccomp` field when present — an *empty* message is
RuntimeDefault — else the deprecated `seccomp_profile_path` string; nothing at all means
unconfined, as the kubelet contract says.
"""

from __future__ import annotations

import functools
import json
import posixpath
from collections.abc import Callable, Collection, Mapping
from importlib import resources
from typing import Any

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.inputs import HostInfo
from cri.oci.security import Profile, legacy_profile

# `uname -m` → the libseccomp name of the native architecture, and → Go's GOARCH name, which
# `includes.arches` uses in the Docker format.
_NATIVE_ARCH = {
    "x86_64": "SCMP_ARCH_X86_64",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
    "armv7l": "SCMP_ARCH_ARM",
    "i686": "SCMP_ARCH_X86",
}
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "i686": "386"}

_TOP_FIELDS = ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata")
_RULE_FIELDS = ("errnoRet", "args")


@functools.cache
def _default_profile_text() -> str:
    return resources.files("cri.oci").joinpath("seccomp_default.json").read_text()


def default_profile() -> dict[str, Any]:
    """Our RuntimeDefault profile, unresolved (a fresh copy each call)."""
    loaded: dict[str, Any] = json.loads(_default_profile_text())
    return loaded


def _kernel_at_least(required: str, kernel: tuple[int, int]) -> bool:
    try:
        parts = tuple(int(p) for p in required.split(".")[:2])
    except ValueError:
        raise errors.InvalidArgument(f"seccomp profile: bad minKernel {required!r}") from None
    return kernel >= parts


def _included(cond: Mapping[str, Any], caps: Collection[str], arch: str, host: HostInfo) -> bool:
    if not all(c in caps for c in cond.get("caps") or ()):
        return False
    arches = cond.get("arches")
    if arches and arch not in arches:
        return False
    return not cond.get("minKernel") or _kernel_at_least(cond["minKernel"], host.kernel)


def _excluded(cond: Mapping[str, Any], caps: Collection[str], arch: str) -> bool:
    return any(c in caps for c in cond.get("caps") or ()) or arch in (cond.get("arches") or ())


def _rule_names(rule: Mapping[str, Any]) -> list[str]:
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise errors.InvalidArgument(f"seccomp profile: a rule has no syscall names: {rule!r}")
    return names


def _plain_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(rule.get("action"), str):
        raise errors.InvalidArgument(f"seccomp profile: a rule has no action: {rule!r}")
    out = {"names": _rule_names(rule), "action": rule["action"]}
    out.update({k: rule[k] for k in _RULE_FIELDS if k in rule})
    return out


def _architectures(profile: Mapping[str, Any], machine: str) -> list[str]:
    if "archMap" not in profile:
        return list(profile.get("architectures") or [])
    native = _NATIVE_ARCH.get(machine)
    for entry in profile["archMap"]:
        if entry.get("architecture") == native:
            return [native, *(entry.get("subArchitectures") or [])]
    return []


def resolve_profile(
    profile: Mapping[str, Any], *, caps: Collection[str], host: HostInfo
) -> dict[str, Any]:
    """A runc-ready linux.seccomp from a Docker-format profile, for one container.

    `caps` is the container's bounding set. Raises errors.InvalidArgument when the profile is
    not a JSON object with a `defaultAction` and well-formed rules.
    """
    if not isinstance(profile, Mapping) or not isinstance(profile.get("defaultAction"), str):
        raise errors.InvalidArgument("seccomp profile has no defaultAction")
    arch = _GOARCH.get(host.machine, host.machine)
    rules = [
        _plain_rule(rule)
        for rule in profile.get("syscalls") or []
        if _included(rule.get("includes") or {}, caps, arch, host)
        and not _excluded(rule.get("excludes") or {}, caps, arch)
    ]
    out = {k: profile[k] for k in _TOP_FIELDS if k in profile}
    out["architectures"] = _architectures(profile, host.machine)
    out["syscalls"] = rules
    return out


def _requested(sc: api_pb2.LinuxContainerSecurityContext) -> Profile | None:
    if sc.HasField("seccomp"):
        return sc.seccomp
    return legacy_profile(sc.seccomp_profile_path)


def _localhost_path(ref: str, profile_root: str) -> str:
    ref = ref.removeprefix("localhost/")
    if not ref:
        raise errors.InvalidArgument("seccomp Localhost profile without a path")
    return ref if ref.startswith("/") else posixpath.join(profile_root, ref)


def _load_localhost(path: str, load: Callable[[str], bytes | None]) -> Any:
    data = load(path)
    if data is None:
        raise errors.InvalidArgument(f"seccomp profile {path!r} does not exist")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise errors.InvalidArgument(f"seccomp profile {path!r} is not valid JSON: {exc}") from None


def seccomp_section(
    sc: api_pb2.LinuxContainerSecurityContext,
    *,
    caps: Collection[str],
    host: HostInfo,
    profile_root: str,
    load: Callable[[str], bytes | None],
) -> dict[str, Any] | None:
    """linux.seccomp for a container, or None for unconfined (see the module docstring).

    Localhost profiles are read through `load` (absolute path, or relative to
    `profile_root`). Raises errors.InvalidArgument for a missing or malformed profile, or a
    LocalhostRef on a profile that is not Localhost.
    """
    request = _requested(sc)
    if sc.privileged or request is None or request.profile_type == Profile.Unconfined:
        return None
    if request.profile_type != Profile.Localhost and request.localhost_ref:
        raise errors.InvalidArgument("seccomp localhost_ref is set on a non-Localhost profile")
    if request.profile_type == Profile.RuntimeDefault:
        return resolve_profile(default_profile(), caps=caps, host=host)
    path = _localhost_path(request.localhost_ref, profile_root)
    profile = _load_localhost(path, load)
    try:
        return resolve_profile(profile, caps=caps, host=host)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"{exc} (in {path!r})") from None
