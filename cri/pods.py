"""Pod sandbox lifecycle: run (all or nothing), stop, remove.

::

    run:     validate ─► namespaces (net, ipc, uts) ─► pod files, /dev/shm ─► sysctls
             ─► CNI ADD ─► store (READY)            any failure undoes every step before it
    stop:    containers stopped ─► CNI DEL ─► NOTREADY      (idempotent)
    remove:  containers removed ─► stop ─► namespaces, shm, files ─► store row  (idempotent)

No process holds a pod: namespaces are pinned by bind mounts under ``<state>/netns/<id>`` and
the files live in ``<state>/pods/<id>``. What a crash leaves half-made is found by
:func:`cri.recovery` from those directories.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import structlog

from cri import errors, events, infra, netns, podfiles, sysctl, userns
from cri import validate as validate_fields
from cri.api.v1 import api_pb2
from cri.cni.pod import PodNetwork, PortMapping
from cri.runtime import Runtime
from cri.store import SandboxRecord

log = structlog.get_logger(__name__)

NODE = api_pb2.NODE


def pin_dir(rt: Runtime, sandbox_id: str) -> Path:
    return rt.state / "netns" / sandbox_id


def release_pin_root(rt: Runtime) -> None:
    """At shutdown: drop the private mount above the pins if no pod holds one."""
    netns.release_private_mount(rt.state / "netns")


def files_dir(rt: Runtime, sandbox_id: str) -> Path:
    return rt.state / "pods" / sandbox_id


def host_network(config: api_pb2.PodSandboxConfig) -> bool:
    return config.linux.security_context.namespace_options.network == NODE


def shares_pid(config: api_pb2.PodSandboxConfig) -> bool:
    return config.linux.security_context.namespace_options.pid == api_pb2.POD


def host_ipc(config: api_pb2.PodSandboxConfig) -> bool:
    return config.linux.security_context.namespace_options.ipc == NODE


def pod_network(record: SandboxRecord) -> PodNetwork:
    config = record.config
    return PodNetwork(
        id=record.id,
        name=config.metadata.name,
        namespace=config.metadata.namespace,
        uid=config.metadata.uid,
        netns=Path(record.namespaces["net"]) if "net" in record.namespaces else None,
        port_mappings=tuple(
            PortMapping(
                protocol=api_pb2.Protocol.Name(p.protocol),
                container_port=p.container_port,
                host_port=p.host_port,
                host_ip=p.host_ip,
            )
            for p in config.port_mappings
        ),
        annotations=dict(config.annotations),
        cgroup_parent=record.cgroup_parent,
        dns=_dns(config),
    )


def _dns(config: api_pb2.PodSandboxConfig) -> podfiles.DnsConfig:
    dns = config.dns_config
    return podfiles.DnsConfig(
        servers=tuple(dns.servers), searches=tuple(dns.searches), options=tuple(dns.options)
    )


def validate(rt: Runtime, config: api_pb2.PodSandboxConfig, handler: str) -> str:
    """Check a RunPodSandbox request; returns the runtime handler name to use."""
    meta = config.metadata
    for field in ("name", "namespace", "uid"):
        validate_fields.metadata_name(f"RunPodSandbox: metadata.{field}", getattr(meta, field))
    if config.log_directory:
        validate_fields.absolute_path("RunPodSandbox: log_directory", config.log_directory)
    validate_fields.cgroup_parent(config.linux.cgroup_parent, driver=rt.config.cgroup_driver)
    validate_fields.port_mappings("RunPodSandbox: port_mappings", config.port_mappings)
    validate_fields.resources("RunPodSandbox: linux.resources", config.linux.resources)
    validate_fields.resources("RunPodSandbox: linux.overhead", config.linux.overhead)
    name = handler or rt.config.default_runtime
    if name not in rt.config.runtimes:
        raise errors.InvalidArgument(f"RunPodSandbox: unknown runtime handler {handler!r}")
    sysctl.validate_sysctls(
        dict(config.linux.sysctls), host_network=host_network(config), host_ipc=host_ipc(config)
    )
    idmap = userns.pod_idmap(config)
    if idmap is not None:
        if not rt.handler_features(name).user_namespaces:
            why = (
                rt.features.no_user_namespaces
                if rt.config.runtimes[name].user_namespaces
                else f"runtimes.{name}.user_namespaces is false"
            )
            raise errors.FailedPrecondition(
                f"RunPodSandbox: no user namespaces for runtime handler {name!r}: {why}"
            )
        userns.check_reachable(rt.state / "pods", idmap)  # runc runs as the pod's root
    return name


async def run(rt: Runtime, config: api_pb2.PodSandboxConfig, handler: str) -> SandboxRecord:
    handler_name = validate(rt, config, handler)
    sandbox_id = secrets.token_hex(32)
    record = SandboxRecord(
        id=sandbox_id,
        config=config,
        runtime_handler=handler_name,
        created_at=time.time_ns(),
        cgroup_parent=config.linux.cgroup_parent,
        files_dir=str(files_dir(rt, sandbox_id)),
    )
    existing = rt.store.sandbox_by_name(record.name_key)
    if existing is not None:
        raise errors.AlreadyExists(
            f"pod sandbox name {record.name_key!r} is reserved by {existing.id}"
        )
    async with rt.locks.hold(record.id), AsyncExitStack() as undo:
        record = await _set_up(rt, record, undo)
        await rt.store.add_sandbox(record)
        undo.pop_all()
    events.publish_sandbox_event(rt, record, events.CREATED)
    events.publish_sandbox_event(rt, record, events.STARTED)
    log.info("pod sandbox ready", pod_id=record.id, ip=record.ip)
    return record


async def _set_up(rt: Runtime, record: SandboxRecord, undo: AsyncExitStack) -> SandboxRecord:
    config = record.config
    directory = files_dir(rt, record.id)
    pins = await _create_namespaces(rt, record, undo)
    record = _replace(record, namespaces={k: str(v) for k, v in pins.items()})
    await asyncio.to_thread(_write_files, directory, config, undo)
    if config.linux.sysctls:
        await asyncio.to_thread(sysctl.apply_sysctls, pins, dict(config.linux.sysctls))
    if shares_pid(config):
        undo.push_async_callback(infra.remove, rt, record.id)
        record = _replace(record, infra_pid=await infra.start(rt, record))
    if not host_network(config):
        network = pod_network(record)
        result = await rt.cni.add(network)
        undo.push_async_callback(rt.cni.delete, network)
        ips = [str(ip) for ip in result.ips]
        record = _replace(
            record, ip=ips[0] if ips else "", additional_ips=tuple(ips[1:]), network_ready=True
        )
    return record


async def _create_namespaces(
    rt: Runtime, record: SandboxRecord, undo: AsyncExitStack
) -> dict[str, Path]:
    config = record.config
    kinds = []
    if not host_network(config):
        kinds += ["net", "uts"]
    if not host_ipc(config):
        kinds.append("ipc")
    if not kinds:
        return {}
    hostname = _hostname(config) if "uts" in kinds else None
    idmap = userns.pod_idmap(config)
    if idmap is not None:  # (validated: no host namespaces beside it)
        pins = await asyncio.to_thread(
            userns.create_pod_namespaces, pin_dir(rt, record.id), kinds, idmap, hostname=hostname
        )
    else:
        pins = await asyncio.to_thread(
            netns.create_namespaces, pin_dir(rt, record.id), kinds, hostname=hostname
        )
    undo.push_async_callback(_remove_pins, rt, record.id, list(pins.values()))
    return pins


def _write_files(directory: Path, config: api_pb2.PodSandboxConfig, undo: AsyncExitStack) -> None:
    podfiles.write_pod_files(directory, hostname=_hostname(config), dns=_dns(config))
    undo.push_async_callback(asyncio.to_thread, _remove_files, directory)
    if not host_ipc(config):
        podfiles.mount_shm(directory / "shm")


def _hostname(config: api_pb2.PodSandboxConfig) -> str:
    if host_network(config):
        return socket.gethostname()
    return config.hostname or config.metadata.name[:63]


async def _remove_pins(rt: Runtime, sandbox_id: str, pins: list[Path]) -> None:
    await asyncio.to_thread(netns.remove_namespaces, pins)
    directory = pin_dir(rt, sandbox_id)
    if directory.exists():
        directory.rmdir()


def _remove_files(directory: Path) -> None:
    podfiles.unmount_shm(directory / "shm")
    if directory.exists():
        for child in sorted(directory.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        directory.rmdir()


async def stop(rt: Runtime, sandbox_id: str) -> None:
    """Stop a sandbox's containers and release its network. Idempotent; unknown id is fine."""
    record = rt.store.find_sandbox(sandbox_id)
    if record is None:
        return
    from cri import containers

    await containers.stop_all(rt, sandbox_id)
    async with rt.locks.hold(sandbox_id):
        record = rt.store.sandbox(sandbox_id)
        if record.state != api_pb2.SANDBOX_NOTREADY:
            # NOTREADY is durable before anything is torn down: a crash half-way leaves a
            # stopped pod whose release recovery (or the next stop) finishes, never a READY
            # pod without its network.
            record = _replace(record, state=api_pb2.SANDBOX_NOTREADY)
            await rt.store.update_sandbox(record)
            events.publish_sandbox_event(rt, record, events.STOPPED)
        await release_network(rt, record)
    log.info("pod sandbox stopped", pod_id=sandbox_id)


async def release_network(rt: Runtime, record: SandboxRecord) -> SandboxRecord:
    """Kill the infra process and run CNI DEL, recording each once done. Idempotent."""
    if record.infra_pid:
        await infra.remove(rt, record.id)
        record = _replace(record, infra_pid=0)
        await rt.store.update_sandbox(record)
    if record.network_ready:
        await rt.cni.delete(pod_network(record))
        record = _replace(record, network_ready=False)
        await rt.store.update_sandbox(record)
    return record


async def remove(rt: Runtime, sandbox_id: str) -> None:
    """Remove a sandbox, its containers, namespaces and files. Idempotent."""
    record = rt.store.find_sandbox(sandbox_id)
    if record is None:
        return
    from cri import containers

    await containers.remove_all(rt, sandbox_id)
    await stop(rt, sandbox_id)
    async with rt.locks.hold(sandbox_id):
        await release(rt, sandbox_id)
        gone = rt.store.find_sandbox(sandbox_id)
        await rt.store.remove_sandbox(sandbox_id)
        if gone is not None:
            events.publish_sandbox_event(rt, gone, events.DELETED)
    log.info("pod sandbox removed", pod_id=sandbox_id)


async def release(rt: Runtime, sandbox_id: str) -> None:
    """Free what a sandbox holds on this node (not its network): infra, pins, shm, files."""
    await infra.remove(rt, sandbox_id)
    pins = pin_dir(rt, sandbox_id)
    await _remove_pins(rt, sandbox_id, [pins / k for k in netns.PIN_KINDS])
    await asyncio.to_thread(_remove_files, files_dir(rt, sandbox_id))


def _replace(record: SandboxRecord, **changes: Any) -> SandboxRecord:
    return dataclasses.replace(record, **changes)
