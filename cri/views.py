"""Store records as the CRI shows them, and the CRI list filters."""

from __future__ import annotations

from collections.abc import Mapping

from cri.api.v1 import api_pb2
from cri.store import ContainerRecord, SandboxRecord


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def id_matches(record_id: str, wanted: str) -> bool:
    """A filter id matches the full id or a prefix of it (crictl passes truncated ids)."""
    return not wanted or record_id.startswith(wanted)


def sandbox_item(record: SandboxRecord) -> api_pb2.PodSandbox:
    config = record.config
    return api_pb2.PodSandbox(
        id=record.id,
        metadata=config.metadata,
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        runtime_handler=record.runtime_handler,
    )


def sandbox_status(record: SandboxRecord) -> api_pb2.PodSandboxStatus:
    config = record.config
    options = config.linux.security_context.namespace_options
    network = api_pb2.PodSandboxNetworkStatus(
        ip=record.ip,
        additional_ips=[api_pb2.PodIP(ip=ip) for ip in record.additional_ips],
    )
    return api_pb2.PodSandboxStatus(
        id=record.id,
        metadata=config.metadata,
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        network=network,
        linux=api_pb2.LinuxPodSandboxStatus(
            namespaces=api_pb2.Namespace(
                options=api_pb2.NamespaceOption(
                    network=options.network,
                    pid=options.pid,
                    ipc=options.ipc,
                    target_id=options.target_id,
                    userns_options=options.userns_options,
                )
            )
        ),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        runtime_handler=record.runtime_handler,
    )


def sandbox_matches(record: SandboxRecord, f: api_pb2.PodSandboxFilter) -> bool:
    if not id_matches(record.id, f.id):
        return False
    if f.HasField("state") and record.state != f.state.state:
        return False
    return labels_match(record.config.labels, f.label_selector)


def container_item(record: ContainerRecord) -> api_pb2.Container:
    config = record.config
    return api_pb2.Container(
        id=record.id,
        pod_sandbox_id=record.sandbox_id,
        metadata=config.metadata,
        image=api_pb2.ImageSpec(image=record.image_name),
        image_ref=record.image_ref,
        image_id=record.image_id,
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
    )


def container_status(record: ContainerRecord) -> api_pb2.ContainerStatus:
    config = record.config
    return api_pb2.ContainerStatus(
        id=record.id,
        metadata=config.metadata,
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        exit_code=record.exit_code,
        image=api_pb2.ImageSpec(image=record.image_name),
        image_ref=record.image_ref,
        image_id=record.image_id,
        reason=record.reason,
        message=record.message,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        mounts=_mounts(record),
        log_path=record.log_path,
        user=api_pb2.ContainerUser(
            linux=api_pb2.LinuxContainerUser(
                uid=record.uid, gid=record.gid, supplemental_groups=list(record.groups)
            )
        ),
        stop_signal=config.stop_signal,
        resources=api_pb2.ContainerResources(linux=config.linux.resources)
        if config.linux.HasField("resources")
        else None,
    )


def _mounts(record: ContainerRecord) -> list[api_pb2.Mount]:
    """The CRI mounts as given; image volumes also carry the resolved image id (image_ref)."""
    mounts = []
    for given in record.config.mounts:
        image_id = record.image_volumes.get(given.container_path)
        if image_id:
            resolved = api_pb2.Mount()
            resolved.CopyFrom(given)
            resolved.image.image_ref = image_id
            given = resolved
        mounts.append(given)
    return mounts


def container_matches(record: ContainerRecord, f: api_pb2.ContainerFilter) -> bool:
    if not id_matches(record.id, f.id) or not id_matches(record.sandbox_id, f.pod_sandbox_id):
        return False
    if f.HasField("state") and record.state != f.state.state:
        return False
    return labels_match(record.config.labels, f.label_selector)
