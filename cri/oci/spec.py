"""build_spec: CRI container config + pod config + image config → OCI runtime spec (a dict).

The output targets runc 1.1 / runtime-spec 1.0.2 and is written by the lead as the bundle's
config.json. The function is pure: it reads the image's /etc/passwd and /etc/group, Localhost
seccomp profiles and host device nodes only through the callables in `SpecInputs`.

    SpecInputs ─┬─ process.py      argv, env, cwd
                ├─ user.py         uid, gid, groups
                ├─ security.py     capabilities, masked paths, AppArmor, privileged
                ├─ seccomp.py      linux.seccomp
                ├─ mounts.py       mounts, rootfs propagation
                ├─ devices.py      linux.devices + device cgroup rules
                ├─ namespaces.py   linux.namespaces, id mappings, sysctls
                └─ resources.py    linux.resources, oom_score_adj
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cri import errors
from cri.oci import devices as devs
from cri.oci import mounts, namespaces, process, resources, seccomp, security
from cri.oci.inputs import HostInfo, PodFilePaths, Rlimit, SpecInputs
from cri.oci.user import ProcessUser, resolve_process_user

__all__ = ["HostInfo", "PodFilePaths", "Rlimit", "SpecInputs", "build_spec"]

OCI_VERSION = "1.0.2"

# Annotations runtimes and tools (crictl inspect, NRI plugins) look for on a container.
ANNOTATION_PREFIX = "io.kubernetes.cri."

IdMappings = tuple[list[dict[str, int]], list[dict[str, int]]]


def _image(inp: SpecInputs) -> Mapping[str, Any]:
    """The `config` object inside the image config JSON (may be absent or null)."""
    image = inp.image_config.get("config") or {}
    if not isinstance(image, Mapping):
        raise errors.InvalidArgument(f"image {inp.image_name!r}: config is not an object")
    return image


def pod_hostname(inp: SpecInputs) -> str:
    """The pod's hostname; the node's for host-network pods, which the kubelet sends none."""
    return inp.sandbox_config.hostname or inp.host.hostname


def _spec_hostname(inp: SpecInputs) -> str | None:
    # Only a container that creates its own UTS namespace sets a hostname: a pinned pod
    # namespace already carries it, and runc refuses a hostname with the host's namespace.
    if "uts" in inp.namespaces and inp.namespaces["uts"] is None:
        return pod_hostname(inp)
    return None


def spec_annotations(inp: SpecInputs) -> dict[str, str]:
    """The CRI annotations verbatim, plus the io.kubernetes.cri.* ones containerd sets."""
    meta = inp.sandbox_config.metadata
    ours = {
        "container-type": "container",
        "sandbox-id": inp.sandbox_id,
        "sandbox-name": meta.name,
        "sandbox-namespace": meta.namespace,
        "sandbox-uid": meta.uid,
        "container-name": inp.config.metadata.name,
        "image-name": inp.image_name,
    }
    return dict(inp.config.annotations) | {ANNOTATION_PREFIX + k: v for k, v in ours.items()}


def _user_section(user: ProcessUser) -> dict[str, Any]:
    return {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)}


def _process(inp: SpecInputs, image: Mapping[str, Any], caps: Sequence[str]) -> dict[str, Any]:
    sc = inp.config.linux.security_context
    user = resolve_process_user(sc, process.image_user(image), inp.read_file)
    proc: dict[str, Any] = {
        "terminal": inp.config.tty,
        "user": _user_section(user),
        "args": process.process_args(inp.config, image),
        "env": process.process_env(inp.config, image, pod_hostname(inp)),
        "cwd": process.process_cwd(inp.config, image),
        "capabilities": security.capabilities_section(caps),
        "noNewPrivileges": sc.no_new_privs,
    }
    if inp.config.linux.HasField("resources"):
        requested = inp.config.linux.resources.oom_score_adj
        proc["oomScoreAdj"] = resources.restrict_oom_score_adj(requested, inp.oom_score_adj_floor)
    profile = security.apparmor_profile(
        sc, enabled=inp.apparmor_enabled, default_profile=inp.apparmor_default_profile
    )
    if profile is not None:
        proc["apparmorProfile"] = profile
    if inp.rlimits:
        proc["rlimits"] = process.rlimits_section(inp.rlimits)
    return proc


def _devices_and_rules(inp: SpecInputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """linux.devices and linux.resources.devices (deny all, then allow what is given)."""
    requested = devs.cri_devices(inp.config.devices, inp.device_probe)
    if inp.config.linux.security_context.privileged:
        everything = [{"allow": True, "access": "rwm"}]
        return devs.privileged_devices(requested, inp.device_probe), everything
    return requested.devices, [{"allow": False, "access": "rwm"}, *requested.rules]


def _resources(inp: SpecInputs, device_rules: list[dict[str, Any]]) -> dict[str, Any]:
    linux = inp.config.linux
    res = linux.resources if linux.HasField("resources") else None
    section = resources.linux_resources(res, cgroup_v2=inp.cgroup_v2, host=inp.host)
    return {"devices": device_rules, **section}


def _optional_linux(
    inp: SpecInputs, caps: Sequence[str], userns: IdMappings | None, plan: mounts.MountPlan
) -> dict[str, Any]:
    """The linux fields that are only written when they say something."""
    out: dict[str, Any] = {}
    if userns is not None:
        out["uidMappings"], out["gidMappings"] = userns
    sysctls = namespaces.container_sysctls(inp.sandbox_config.linux.sysctls, inp.namespaces)
    if sysctls:
        out["sysctl"] = sysctls
    profile = seccomp.seccomp_section(
        inp.config.linux.security_context,
        caps=caps,
        host=inp.host,
        profile_root=inp.seccomp_profile_root,
        load=inp.load_seccomp_profile,
    )
    if profile is not None:
        out["seccomp"] = profile
    if plan.rootfs_propagation is not None:
        out["rootfsPropagation"] = plan.rootfs_propagation
    return out


def _linux(
    inp: SpecInputs, caps: Sequence[str], userns: IdMappings | None, plan: mounts.MountPlan
) -> dict[str, Any]:
    sc = inp.config.linux.security_context
    devices, rules = _devices_and_rules(inp)
    masked, readonly = security.masked_and_readonly_paths(sc, userns=userns is not None)
    cgroup_ns = inp.cgroup_v2 and not sc.privileged
    return {
        "cgroupsPath": inp.cgroups_path,
        "namespaces": namespaces.namespaces_section(
            inp.namespaces, userns=userns is not None, cgroup_ns=cgroup_ns
        ),
        "resources": _resources(inp, rules),
        "devices": devices,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        **_optional_linux(inp, caps, userns, plan),
    }


def build_spec(inp: SpecInputs) -> dict[str, Any]:
    """The OCI runtime spec of one container.

    Raises errors.InvalidArgument, naming the container and its id, when the request cannot be
    honoured: no command, a user or group the image does not define, run_as_group without a
    user, an unknown capability, a privileged container in an unprivileged pod, a bad or
    missing seccomp profile, a relative mount path, an unsupported recursive read-only mount,
    invalid user-namespace options, or resources the host's cgroups cannot express.
    """
    try:
        return _build(inp)
    except errors.InvalidArgument as exc:
        name = inp.config.metadata.name
        raise errors.InvalidArgument(f"container {name!r} ({inp.container_id}): {exc}") from exc


def _build(inp: SpecInputs) -> dict[str, Any]:
    sc = inp.config.linux.security_context
    security.check_privileged(sc, inp.sandbox_privileged)
    image = _image(inp)
    userns = namespaces.pod_userns(inp.sandbox_config, inp.config)
    caps = security.effective_capabilities(sc, inp.host.capabilities)
    sys_bind = userns is not None and "network" not in inp.namespaces
    plan = mounts.build_mounts(inp, privileged=sc.privileged, sys_bind=sys_bind)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": _process(inp, image, caps),
        "root": {"path": inp.rootfs, "readonly": sc.readonly_rootfs},
        "mounts": plan.mounts,
        "annotations": spec_annotations(inp),
        "linux": _linux(inp, caps, userns, plan),
    }
    hostname = _spec_hostname(inp)
    if hostname is not None:
        spec["hostname"] = hostname
    return spec
