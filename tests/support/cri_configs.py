"""CRI request builders for tests: a pod and a container the way a kubelet would send them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from cri.api.v1 import api_pb2


def sandbox_config(
    name: str,
    *,
    namespace: str = "default",
    log_directory: str = "",
    labels: Mapping[str, str] | None = None,
    host_network: bool = False,
    port_mappings: Sequence[api_pb2.PortMapping] = (),
) -> api_pb2.PodSandboxConfig:
    uid = str(uuid.uuid4())
    # As the kubelet sends it: a PID namespace per container unless shareProcessNamespace.
    options = api_pb2.NamespaceOption(
        network=api_pb2.NODE if host_network else api_pb2.POD, pid=api_pb2.CONTAINER
    )
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=uid),
        hostname=name,
        log_directory=log_directory,
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.uid": uid, **(labels or {})},
        annotations={"test/annotation": name},
        port_mappings=list(port_mappings),
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=options)
        ),
    )


def container_config(
    name: str,
    image: str,
    command: Sequence[str],
    *,
    log_path: str = "",
    labels: Mapping[str, str] | None = None,
) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name),
        image=api_pb2.ImageSpec(image=image),
        command=list(command),
        log_path=log_path,
        labels={"io.kubernetes.container.name": name, **(labels or {})},
        annotations={"test/container": name},
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(
                namespace_options=api_pb2.NamespaceOption(pid=api_pb2.CONTAINER),
                seccomp=api_pb2.SecurityProfile(
                    profile_type=api_pb2.SecurityProfile.RuntimeDefault
                ),
            )
        ),
    )
