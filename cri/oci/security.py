"""Capabilities, masked and read-only paths, AppArmor and the privileged switch.

Capability rules follow the kubelet contract and containerd: a container starts from the
default set below; "ALL" in `add_capabilities` first widens it to everything the host allows,
"ALL" in `drop_capabilities` first empties it, then the individual adds and drops apply. Names
come without the "CAP_" prefix (it is accepted too) in any case. The same set goes into the
bounding, effective and permitted sets; inheritable and ambient stay empty (what non-root plus
capabilities should mean is undefined in Kubernetes, kubernetes/kubernetes#56374). A
privileged container gets every capability the host allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from cri import errors
from cri.api.v1 import api_pb2

log = structlog.get_logger(__name__)

# Capability numbers from linux/capability.h; the order of this tuple is the numbering.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBER = {name: number for number, name in enumerate(ALL_CAPABILITIES)}

# containerd's default set (pkg/oci/spec.go), which the kubelet contract names.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def capabilities_from_mask(mask: int) -> tuple[str, ...]:
    """Capability names of a bitmask such as /proc/self/status CapBnd (unknown bits ignored)."""
    return tuple(name for number, name in enumerate(ALL_CAPABILITIES) if mask >> number & 1)


def capability_mask(names: Iterable[str]) -> int:
    """The bitmask of capability names (the inverse of `capabilities_from_mask`)."""
    return sum(1 << CAP_NUMBER[name] for name in set(names))


def canonical_capability(name: str) -> str:
    """ "net_admin" / "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; unknown names are InvalidArgument."""
    upper = name.strip().upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in CAP_NUMBER:
        raise errors.InvalidArgument(f"unknown capability {name!r}")
    return full


def _is_all(name: str) -> bool:
    return name.strip().upper() == "ALL"


def _sorted_caps(caps: Iterable[str]) -> list[str]:
    return sorted(set(caps), key=CAP_NUMBER.__getitem__)


def effective_capabilities(
    sc: api_pb2.LinuxContainerSecurityContext, host_caps: Sequence[str]
) -> list[str]:
    """The capability set of a container, in capability-number order.

    `host_caps` is what "ALL" and privileged mean: berthd's own bounding set, since no process
    it starts can hold more (a capability outside it is dropped with a warning rather than
    failing the start). Raises errors.InvalidArgument for an unknown capability name.
    """
    if sc.privileged:
        return _sorted_caps(host_caps)
    add, drop = sc.capabilities.add_capabilities, sc.capabilities.drop_capabilities
    caps = set(DEFAULT_CAPABILITIES)
    if any(_is_all(c) for c in add):
        caps = set(host_caps)
    if any(_is_all(c) for c in drop):
        caps = set()
    caps |= {canonical_capability(c) for c in add if not _is_all(c)}
    caps -= {canonical_capability(c) for c in drop if not _is_all(c)}
    return _sorted_caps(_within_host(caps, host_caps))


def _within_host(caps: set[str], host_caps: Sequence[str]) -> set[str]:
    """Drop what the host cannot grant: the runtime would fail to start the container."""
    missing = caps - set(host_caps)
    if missing:
        log.warning("capabilities not available on this host", dropped=sorted(missing))
    return caps - missing


def capabilities_section(caps: Sequence[str]) -> dict[str, list[str]]:
    """process.capabilities for the set `caps`."""
    return {
        "bounding": list(caps),
        "effective": list(caps),
        "permitted": list(caps),
        "inheritable": [],
        "ambient": [],
    }


def masked_and_readonly_paths(
    sc: api_pb2.LinuxContainerSecurityContext, *, userns: bool
) -> tuple[list[str], list[str]]:
    """linux.maskedPaths and linux.readonlyPaths.

    The kubelet sends both lists, or both empty for `procMount: Unmasked` — which Kubernetes
    allows only in pods with their own user namespace. So empty lists mean "unmasked" in a
    user-namespaced pod and "use the defaults" everywhere else (a client such as crictl that
    says nothing still gets a masked /proc). A privileged container gets neither.
    """
    if sc.privileged:
        return [], []
    masked, readonly = list(sc.masked_paths), list(sc.readonly_paths)
    if not masked and not readonly and not userns:
        return list(DEFAULT_MASKED_PATHS), list(DEFAULT_READONLY_PATHS)
    return masked, readonly


def check_privileged(sc: api_pb2.LinuxContainerSecurityContext, sandbox_privileged: bool) -> None:
    """A privileged container needs a privileged pod, as containerd requires."""
    if sc.privileged and not sandbox_privileged:
        raise errors.InvalidArgument("no privileged container allowed in a non-privileged pod")


Profile = api_pb2.SecurityProfile


def legacy_profile(text: str) -> Profile | None:
    """A SecurityProfile from the deprecated string fields ("runtime/default", "localhost/x")."""
    if not text:
        return None
    if text in ("runtime/default", "docker/default"):
        return Profile(profile_type=Profile.RuntimeDefault)
    if text == "unconfined":
        return Profile(profile_type=Profile.Unconfined)
    if text.startswith("localhost/"):
        return Profile(
            profile_type=Profile.Localhost, localhost_ref=text.removeprefix("localhost/")
        )
    raise errors.InvalidArgument(f"invalid security profile {text!r}")


def apparmor_profile(
    sc: api_pb2.LinuxContainerSecurityContext, *, enabled: bool, default_profile: str
) -> str | None:
    """process.apparmorProfile, or None for none.

    Without AppArmor on the host only "unconfined" (or nothing) can be honoured; any other
    request is InvalidArgument. With it, nothing requested means the runtime default, and a
    privileged container runs unconfined unless it names a Localhost profile.
    """
    request = sc.apparmor if sc.HasField("apparmor") else legacy_profile(sc.apparmor_profile)
    if not enabled:
        if request is not None and request.profile_type != Profile.Unconfined:
            raise errors.InvalidArgument("apparmor is not enabled on this node")
        return None
    if request is not None and request.profile_type == Profile.Localhost:
        name = request.localhost_ref.removeprefix("localhost/")
        if not name:
            raise errors.InvalidArgument("apparmor Localhost profile without a name")
        return name
    if (request is not None and request.profile_type == Profile.Unconfined) or sc.privileged:
        return None
    return default_profile
