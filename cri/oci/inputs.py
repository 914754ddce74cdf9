"""The records that feed OCI spec generation: what the lead computed, and facts about the host.

Everything `build_spec` needs from the outside world arrives here — either as plain data or as a
small callable (reading a file from the image, loading a Localhost seccomp profile, probing
device nodes) — so spec generation itself stays a pure function that tests drive with fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cri.api.v1 import api_pb2
from cri.oci.devices import DeviceProbe, HostDeviceProbe

# Kinds of namespace a container can be placed in, as the OCI spec names them.
NAMESPACE_KINDS = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFilePaths:
    """Host paths of the files every container of a pod shares (None: the pod has none)."""

    hostname: str | None = None
    resolv_conf: str | None = None
    hosts: str | None = None
    shm: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInfo:
    """Facts about the node that change the spec; `cri.oci.host.detect_host` reads them."""

    hostname: str
    machine: str  # `uname -m`: picks the seccomp architectures
    kernel: tuple[int, int]  # (major, minor): gates seccomp rules that need a newer kernel
    capabilities: tuple[str, ...]  # berthd's bounding set: what "ALL" and privileged mean here
    swap_controller: bool = True  # memory+swap accounting exists (memsw on v1, swap.max on v2)
    hugetlb_controller: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit:
    """One process rlimit, e.g. RLIMIT_NOFILE."""

    type: str
    soft: int
    hard: int


def read_host_file(path: str) -> bytes | None:
    """Default Localhost seccomp profile loader: the file's bytes, None when it is absent."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecInputs:
    """Everything one container's OCI runtime spec is made from.

    `namespaces` maps "network"/"ipc"/"uts"/"pid" (and "user", "cgroup") to the path of a
    namespace to join, None for a new namespace of that kind, and leaves a kind out for the
    host's. A mount namespace is always new. `image_volume_mounts` holds the host paths the lead
    prepared for CRI mounts that name an image (keyed by container path);
    `image_config_volumes` those for the image config's own `Volumes` (skipped when a CRI mount
    covers the same path).
    """

    container_id: str
    sandbox_id: str
    config: api_pb2.ContainerConfig
    sandbox_config: api_pb2.PodSandboxConfig
    image_config: Mapping[str, Any]
    image_name: str = ""
    rootfs: str
    namespaces: Mapping[str, str | None]
    pod_files: PodFilePaths | None
    cgroups_path: str
    sandbox_privileged: bool
    read_file: Callable[[str], bytes | None]
    image_volume_mounts: Mapping[str, str] = field(default_factory=dict)
    image_config_volumes: Mapping[str, str] = field(default_factory=dict)
    oom_score_adj_floor: int | None
    cgroup_v2: bool
    host: HostInfo
    seccomp_profile_root: str = "/var/lib/kubelet/seccomp"
    load_seccomp_profile: Callable[[str], bytes | None] = read_host_file
    apparmor_enabled: bool = False
    apparmor_default_profile: str = "berth-default"
    recursive_read_only_supported: bool = False
    device_probe: DeviceProbe = field(default_factory=HostDeviceProbe)
    rlimits: Sequence[Rlimit] = ()
