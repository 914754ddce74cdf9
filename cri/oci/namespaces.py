"""linux.namespaces, user-namespace id mappings and the sysctls a container sets itself.

The lead decides which namespaces a container joins (the pod's pinned ones), creates anew, or
shares with the host; here that decision becomes the OCI list. A mount namespace is always new.
A cgroup namespace is added on cgroup v2 for unprivileged containers, hiding the host's cgroup
tree as containerd does (kept off on v1 for compatibility, and for privileged containers).
"""

from __future__ import annotations

from collections.abc import Mapping

from cri import errors, sysctl
from cri.api.v1 import api_pb2
from cri.oci.inputs import NAMESPACE_KINDS

_SYSCTL_NAMESPACE = {"net": "network", "ipc": "ipc"}


def _mapping(m: api_pb2.IDMapping) -> dict[str, int]:
    return {"containerID": m.container_id, "hostID": m.host_id, "size": m.length}


def _check_mappings(kind: str, mappings: list[api_pb2.IDMapping]) -> None:
    if len(mappings) != 1:
        raise errors.InvalidArgument(
            f"user namespace needs exactly one {kind} mapping, got {len(mappings)}"
        )
    (m,) = mappings
    if m.container_id != 0 or m.length == 0:
        raise errors.InvalidArgument(
            f"user namespace {kind} mapping must map container id 0 onwards, got {m}"
        )


def userns_mappings(
    opts: api_pb2.UserNamespace | None,
) -> tuple[list[dict[str, int]], list[dict[str, int]]] | None:
    """(uidMappings, gidMappings) for a pod in its own user namespace, None for the host's.

    Mode NODE (or no options) is the host's. Mode POD needs exactly one uid and one gid
    mapping starting at container id 0, as containerd requires; CONTAINER and TARGET are not
    supported. Anything else is errors.InvalidArgument.
    """
    if opts is None or opts.mode == api_pb2.NODE:
        return None
    if opts.mode != api_pb2.POD:
        mode = api_pb2.NamespaceMode.Name(opts.mode)
        raise errors.InvalidArgument(f"user namespace mode {mode} is not supported")
    _check_mappings("uid", list(opts.uids))
    _check_mappings("gid", list(opts.gids))
    return [_mapping(m) for m in opts.uids], [_mapping(m) for m in opts.gids]


def pod_userns(
    sandbox: api_pb2.PodSandboxConfig, container: api_pb2.ContainerConfig
) -> tuple[list[dict[str, int]], list[dict[str, int]]] | None:
    """The pod's user-namespace mappings; the container may only repeat the pod's options."""
    pod_opts = sandbox.linux.security_context.namespace_options
    ctr_opts = container.linux.security_context.namespace_options
    if ctr_opts.HasField("userns_options") and ctr_opts.userns_options != pod_opts.userns_options:
        raise errors.InvalidArgument("container user namespace options differ from the pod's")
    return userns_mappings(pod_opts.userns_options if pod_opts.HasField("userns_options") else None)


def _entry(kind: str, path: str | None) -> dict[str, str]:
    return {"type": kind, "path": path} if path else {"type": kind}


def namespaces_section(
    namespaces: Mapping[str, str | None], *, userns: bool, cgroup_ns: bool
) -> list[dict[str, str]]:
    """linux.namespaces: the given ones, a new mount namespace, user and cgroup as decided."""
    unknown = set(namespaces) - set(NAMESPACE_KINDS)
    if unknown:
        raise ValueError(f"unknown namespace kinds {sorted(unknown)}")
    wanted = dict(namespaces)
    wanted["mount"] = None
    if not userns:
        wanted.pop("user", None)
    elif "user" not in wanted:
        wanted["user"] = None
    if cgroup_ns and "cgroup" not in wanted:
        wanted["cgroup"] = None
    return [_entry(kind, wanted[kind]) for kind in NAMESPACE_KINDS if kind in wanted]


def container_sysctls(
    sysctls: Mapping[str, str], namespaces: Mapping[str, str | None]
) -> dict[str, str]:
    """Pod sysctls that belong in this container's spec: those of namespaces it creates.

    berthd writes pod sysctls into the pod's pinned namespaces itself, so a container that
    joins them needs none here; host namespaces never get pod sysctls; names that belong to no
    namespace are the kubelet's and berthd's business, not a container's.
    """
    out = {}
    for name, value in sysctls.items():
        kind = _SYSCTL_NAMESPACE.get(sysctl.namespace_of(sysctl.normalize(name)) or "")
        if kind is not None and kind in namespaces and namespaces[kind] is None:
            out[sysctl.normalize(name)] = value
    return out
