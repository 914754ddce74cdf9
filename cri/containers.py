"""Container lifecycle through the shim: create (all or nothing), start, stop, remove.

::

    CreateContainer ─► CREATED ─StartContainer─► RUNNING ─exit/stop─► EXITED ─► removed
          │                                                              ▲
          └──────────────── RemoveContainer (stops first) ───────────────┘

The store record is the source of truth for the CRI; the shim is the source of truth for the
process. A watcher task per running container waits on its shim and writes the exit into the
store; after a berthd restart :mod:`cri.recovery` restarts the watchers, or reads ``exit.json``
for a shim that died meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import structlog

from cri import cgroups, errors, events, netns, pods, userns, volumes
from cri import validate as validate_fields
from cri.api.v1 import api_pb2
from cri.oci.inputs import PodFilePaths, SpecInputs
from cri.oci.spec import build_spec
from cri.runtime import Runtime
from cri.store import ContainerRecord, SandboxRecord
from shim import api as shim_api
from shim import errors as shim_errors
from snapshotter import errors as snapshot_errors

log = structlog.get_logger(__name__)

CREATED, RUNNING, EXITED = (
    api_pb2.CONTAINER_CREATED,
    api_pb2.CONTAINER_RUNNING,
    api_pb2.CONTAINER_EXITED,
)


def state_name(state: int) -> str:
    return api_pb2.ContainerState.Name(state)  # type: ignore[arg-type]


def running(rt: Runtime, container_id: str) -> ContainerRecord:
    """The record of a RUNNING container (by id or prefix); NotFound / FailedPrecondition."""
    record = rt.store.container(container_id)
    if record.state != RUNNING:
        raise errors.FailedPrecondition(f"container {record.id} is not running")
    return record


def bundle_dir(rt: Runtime, container_id: str) -> Path:
    return rt.state / "containers" / container_id / "bundle"


def idmap_dir(rt: Runtime, container_id: str) -> Path:
    """Where the idmapped clones of a user-namespaced container's mounts are attached."""
    return bundle_dir(rt, container_id) / "idmap"


def log_path(sandbox: SandboxRecord, config: api_pb2.ContainerConfig) -> str:
    directory = sandbox.config.log_directory
    if not directory or not config.log_path:
        return ""
    return os.path.join(directory, config.log_path)


def validate(rt: Runtime, sandbox_id: str, config: api_pb2.ContainerConfig) -> SandboxRecord:
    validate_fields.metadata_name("CreateContainer: metadata.name", config.metadata.name)
    if not config.image.image:
        raise errors.InvalidArgument("CreateContainer: image is empty")
    if config.log_path:
        validate_fields.relative_path("CreateContainer: log_path", config.log_path)
    validate_fields.resources("CreateContainer: linux.resources", config.linux.resources)
    sandbox = rt.store.sandbox(sandbox_id)
    if sandbox.state != api_pb2.SANDBOX_READY:
        raise errors.FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
    privileged = config.linux.security_context.privileged
    if privileged and not sandbox.config.linux.security_context.privileged:
        raise errors.InvalidArgument(
            f"container {config.metadata.name!r}: privileged container in non-privileged "
            f"pod sandbox {sandbox.id}"
        )
    return sandbox


async def create(rt: Runtime, sandbox_id: str, config: api_pb2.ContainerConfig) -> ContainerRecord:
    sandbox = validate(rt, sandbox_id, config)
    name_key = f"{sandbox.id}/{config.metadata.name}"
    existing = rt.store.container_by_name(name_key)
    if existing is not None:
        raise errors.AlreadyExists(
            f"container name {config.metadata.name!r} is reserved by {existing.id} "
            f"in pod sandbox {sandbox.id}"
        )
    image = rt.images.get(config.image.image)
    record = ContainerRecord(
        id=secrets.token_hex(32),
        sandbox_id=sandbox.id,
        config=config,
        image_id=image.id,
        image_ref=image.repo_digests[0] if image.repo_digests else image.id,
        image_name=config.image.image,
        created_at=time.time_ns(),
        runtime_handler=sandbox.runtime_handler,
        log_path=log_path(sandbox, config),
    )
    async with rt.locks.hold(record.id), AsyncExitStack() as undo:
        record = await _set_up(rt, sandbox, record, image, undo)
        await rt.store.add_container(record)
        undo.pop_all()
    events.publish_container_event(rt, record, events.CREATED)
    log.info("container created", container_id=record.id, pod_id=sandbox.id)
    return record


async def _set_up(
    rt: Runtime,
    sandbox: SandboxRecord,
    record: ContainerRecord,
    image: Any,
    undo: AsyncExitStack,
) -> ContainerRecord:
    spawning = asyncio.ensure_future(rt.shims.spawn(record.id))  # while the bundle is made
    try:
        record, mounts = await _make_bundle(rt, sandbox, record, image, undo)
        task = await spawning
    except BaseException:
        await _discard_spawned(rt, record.id, spawning)
        raise
    undo.push_async_callback(rt.shims.destroy, record.id)
    try:
        await _create(rt, record, task, mounts)
    finally:  # overlayfs and the container's mounts hold what they use of the clones
        if "user" in sandbox.namespaces:
            await asyncio.to_thread(userns.detach_all, idmap_dir(rt, record.id))
    return record


async def _create(rt: Runtime, record: ContainerRecord, task: Any, mounts: list[Any]) -> None:
    handler = rt.config.runtimes[record.runtime_handler]
    config = record.config
    await task.create(
        shim_api.CreateParams(
            bundle=str(bundle_dir(rt, record.id)),
            runtime=handler.path,
            runtime_root=str(rt.config.runtime_root(record.runtime_handler)),
            runtime_options=rt.config.runtime_options(record.runtime_handler),
            rootfs_mounts=tuple(
                shim_api.Mount(type=m.type, source=m.source, options=tuple(m.options))
                for m in mounts
            ),
            log_path=record.log_path,
            tty=config.tty,
            stdin=config.stdin,
            stdin_once=config.stdin_once,
        )
    )


async def _make_bundle(
    rt: Runtime,
    sandbox: SandboxRecord,
    record: ContainerRecord,
    image: Any,
    undo: AsyncExitStack,
) -> tuple[ContainerRecord, list[Any]]:
    """The rootfs snapshot, volumes, OCI spec and bundle; (the record, the rootfs mounts)."""
    bundle = bundle_dir(rt, record.id)
    undo.push_async_callback(asyncio.to_thread, remove_container_dir, bundle.parent)
    mounts = await asyncio.to_thread(rt.images.prepare_rootfs, record.id, image.id)
    undo.push_async_callback(asyncio.to_thread, rt.images.remove_rootfs, record.id)
    idmapped = _idmapped(rt, sandbox, record.id)
    sources, volume_images = await asyncio.to_thread(_prepare_volumes, rt, record, idmapped)
    undo.push_async_callback(asyncio.to_thread, volumes.release, rt, record.id)
    spec = build_spec(_spec_inputs(rt, sandbox, record, image, sources))
    if idmapped is not None:
        spec, mounts = await asyncio.to_thread(
            idmapped.container, spec, mounts, volumes.volumes_dir(rt, record.id)
        )
    user = spec["process"]["user"]
    record = dataclasses.replace(
        record,
        uid=user.get("uid", 0),
        gid=user.get("gid", 0),
        groups=tuple(user.get("additionalGids", ())),
        image_volumes=volume_images,
    )
    await asyncio.to_thread(_write_bundle, bundle, spec)
    if record.log_path:
        await asyncio.to_thread(Path(record.log_path).parent.mkdir, parents=True, exist_ok=True)
    return record, mounts


def _idmapped(
    rt: Runtime, sandbox: SandboxRecord, container_id: str
) -> userns.ContainerMounts | None:
    """In a user-namespaced pod, what makes the container's idmapped mounts (cri.userns)."""
    idmap = userns.pod_idmap(sandbox.config)
    if idmap is None or "user" not in sandbox.namespaces:
        return None
    return userns.ContainerMounts(sandbox.namespaces["user"], idmap, idmap_dir(rt, container_id))


async def _discard_spawned(rt: Runtime, container_id: str, spawning: asyncio.Future[Any]) -> None:
    """After a failed set-up: wait for the shim being spawned and remove it."""
    try:
        await spawning
    except Exception:  # the spawn failed too: it left no shim
        return
    await rt.shims.destroy(container_id)


def _prepare_volumes(
    rt: Runtime, record: ContainerRecord, idmapped: userns.ContainerMounts | None
) -> tuple[dict[str, str], dict[str, str]]:
    remap = idmapped.layers if idmapped is not None else None
    with ExitStack() as stack:
        prepared = volumes.prepare(rt, record.id, record.config, stack, remap=remap)
        stack.pop_all()
    return prepared


def _spec_inputs(
    rt: Runtime,
    sandbox: SandboxRecord,
    record: ContainerRecord,
    image: Any,
    volume_sources: dict[str, str],
) -> SpecInputs:
    files = Path(sandbox.files_dir)
    host_ipc = pods.host_ipc(sandbox.config)
    return SpecInputs(
        container_id=record.id,
        sandbox_id=sandbox.id,
        config=record.config,
        sandbox_config=sandbox.config,
        image_config=image.config,
        image_name=record.image_name,
        rootfs="rootfs",
        namespaces=_namespaces(rt, sandbox, record.config),
        pod_files=PodFilePaths(
            hostname=str(files / "hostname"),
            resolv_conf=str(files / "resolv.conf"),
            hosts=str(files / "hosts"),
            shm=None if host_ipc else str(files / "shm"),
        ),
        cgroups_path=cgroups.container_cgroups_path(
            driver=rt.config.cgroup_driver,
            cgroup_root=rt.config.cgroup_root,
            parent=sandbox.cgroup_parent,
            container_id=record.id,
        ),
        sandbox_privileged=sandbox.config.linux.security_context.privileged,
        read_file=lambda path: rt.images.read_image_file(record.image_id, path),
        oom_score_adj_floor=rt.host.oom_score_adj if rt.config.restrict_oom_score_adj else None,
        cgroup_v2=rt.host.cgroup_v2,
        host=rt.host.spec_host,
        recursive_read_only_supported=rt.features.recursive_read_only_mounts,
        image_volume_mounts=volume_sources,
    )


def _namespaces(
    rt: Runtime, sandbox: SandboxRecord, config: api_pb2.ContainerConfig
) -> dict[str, str | None]:
    """Join the pod's pinned namespaces; host ones are left out; PID per the CRI mode."""
    namespaces: dict[str, str | None] = {
        netns.PIN_KINDS[k]: path for k, path in sandbox.namespaces.items() if k in netns.PIN_KINDS
    }
    options = config.linux.security_context.namespace_options
    if options.pid == api_pb2.POD and sandbox.infra_pid:
        namespaces["pid"] = f"/proc/{sandbox.infra_pid}/ns/pid"
    elif options.pid == api_pb2.TARGET:
        target = rt.store.container(options.target_id)
        if target.state != RUNNING or not target.pid:
            raise errors.FailedPrecondition(
                f"PID namespace target container {target.id} is not running"
            )
        namespaces["pid"] = f"/proc/{target.pid}/ns/pid"
    elif options.pid != api_pb2.NODE:
        namespaces["pid"] = None  # a new PID namespace for this container
    return namespaces


def _write_bundle(bundle: Path, spec: dict[str, Any]) -> None:
    """Write config.json whole or not at all. Not fsynced: a bundle serves a running
    container, and after a power loss none runs (containerd keeps bundles on a tmpfs)."""
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "rootfs").mkdir(exist_ok=True)
    tmp = bundle / "config.json.tmp"
    tmp.write_text(json.dumps(spec))
    tmp.rename(bundle / "config.json")


def remove_container_dir(path: Path) -> None:
    """A container's state directory: idmapped clones a crash left are detached first."""
    userns.detach_all(path / "bundle" / "idmap")
    remove_tree(path)


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            if os.path.ismount(child):
                continue  # never delete through a mount; the shim unmounts rootfs
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


async def start(rt: Runtime, container_id: str) -> None:
    async with rt.locks.hold(container_id):
        record = rt.store.container(container_id)
        if record.state != CREATED:
            raise errors.FailedPrecondition(
                f"container {record.id} is {state_name(record.state)}, not CREATED"
            )
        task = await rt.shims.get(record.id)
        try:
            state = await task.start()
        except shim_errors.Error as exc:
            # runc may have started the process before failing: never leave it running.
            with contextlib.suppress(shim_errors.Error):
                await task.kill(signal.SIGKILL, all=True)
                await task.wait(timeout=10.0)
            await record_exit(rt, record, await _final_state(task), failed_start=str(exc))
            raise
        record = dataclasses.replace(
            record, state=RUNNING, pid=state.pid, started_at=state.started_at_ns or time.time_ns()
        )
        await rt.store.update_container(record)
        events.publish_container_event(rt, record, events.STARTED)
    rt.watch(record.id)
    log.info("container started", container_id=record.id)


async def _final_state(task: shim_api.TaskAPI) -> shim_api.TaskState | None:
    try:
        return await task.state()
    except shim_errors.Error:
        return None


async def watch(rt: Runtime, container_id: str) -> None:
    """Wait for the container's exit and record it (a task owned by the runtime)."""
    state: shim_api.TaskState | None
    try:
        task = await rt.shims.get(container_id)
        state = await task.wait()
    except shim_errors.Error as exc:
        state = rt.shims.exit_state(container_id)
        log.warning(
            "shim lost", container_id=container_id, error=str(exc), exit_recorded=state is not None
        )
        # Nobody watches the container any more: kill it rather than report an exit while
        # it still runs (the kubelet would start a second one beside it).
        record = rt.store.find_container(container_id)
        with contextlib.suppress(shim_errors.Error):
            await rt.shims.destroy(container_id, record.runtime_handler if record else None)
    await _settle(rt, container_id, state)


async def _settle(rt: Runtime, container_id: str, state: shim_api.TaskState | None) -> None:
    """Record the exit unless someone else (the watcher, or a stop) already did."""
    async with rt.locks.hold(container_id):
        current = rt.store.find_container(container_id)
        if current is not None and current.state == RUNNING:
            await record_exit(rt, current, state)


async def record_exit(
    rt: Runtime,
    record: ContainerRecord,
    state: shim_api.TaskState | None,
    failed_start: str = "",
) -> None:
    if state is None:
        changes: dict[str, Any] = {
            "exit_code": 255,
            "reason": "Unknown",
            "message": failed_start or "the container's shim died and left no exit status",
        }
    else:
        changes = {
            "exit_code": state.exit_code,
            "message": failed_start or state.message,
            "reason": _reason(state, failed_start),
        }
        if state.started_at_ns:
            changes["started_at"] = record.started_at or state.started_at_ns
    changes["finished_at"] = (state.finished_at_ns if state else 0) or time.time_ns()
    exited = dataclasses.replace(record, state=EXITED, **changes)
    await rt.store.update_container(exited)
    events.publish_container_event(rt, exited, events.STOPPED)
    log.info(
        "container exited",
        container_id=record.id,
        exit_code=changes["exit_code"],
        reason=changes["reason"],
    )


def _reason(state: shim_api.TaskState, failed_start: str) -> str:
    if failed_start:
        return "StartError"
    if state.oom_killed:
        return "OOMKilled"
    return "Completed" if state.exit_code == 0 else "Error"


async def stop(rt: Runtime, container_id: str, grace: int) -> None:
    """Stop signal (CRI stop_signal, image StopSignal or SIGTERM); SIGKILL after ``grace`` s.

    Idempotent. A container whose shim is gone is recorded as exited with what the shim
    left on disk.
    """
    record = rt.store.find_container(container_id)
    if record is None or record.state != RUNNING:
        return
    try:
        state: shim_api.TaskState | None = await _terminate(rt, record, grace)
    except (shim_errors.Unavailable, shim_errors.NotFound):
        # The shim is gone: make sure the container went with it, then record what it left.
        state = rt.shims.exit_state(record.id)
        await rt.shims.destroy(record.id, record.runtime_handler)
    await _settle(rt, record.id, state)
    log.info("container stopped", container_id=record.id)


async def _terminate(rt: Runtime, record: ContainerRecord, grace: int) -> shim_api.TaskState:
    task = await rt.shims.get(record.id)
    if grace > 0:
        await _signal(task, _stop_signal(rt, record))
        with contextlib.suppress(shim_errors.DeadlineExceeded):
            return await task.wait(timeout=float(grace))
    await _signal(task, signal.SIGKILL)
    return await task.wait()


async def _signal(task: shim_api.TaskAPI, signum: int) -> None:
    with contextlib.suppress(shim_errors.NotFound):
        await task.kill(signum, all=False)


def _stop_signal(rt: Runtime, record: ContainerRecord) -> int:
    """The CRI's stop_signal, else the image's StopSignal, else SIGTERM."""
    if record.config.stop_signal != api_pb2.SIGNAL_RUNTIME_DEFAULT:
        name = api_pb2.Signal.Name(record.config.stop_signal).removeprefix("SIGNAL_")
        return _parse_signal(name) or signal.SIGTERM
    try:
        image_config = rt.images.get(record.image_id).config
    except snapshot_errors.NotFound:
        return signal.SIGTERM
    name = str(image_config.get("config", {}).get("StopSignal", "") or "")
    return _parse_signal(name) or signal.SIGTERM


def _parse_signal(name: str) -> int | None:
    if not name:
        return None
    if name.isdigit():
        return int(name)
    name = name.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    return int(getattr(signal.Signals, name, 0)) or None


async def remove(rt: Runtime, container_id: str) -> None:
    """Force-stop if needed, then delete the task, the rootfs and the record. Idempotent."""
    record = rt.store.find_container(container_id)
    if record is None:
        return
    await stop(rt, record.id, grace=0)
    async with rt.locks.hold(record.id):
        await rt.shims.destroy(record.id)
        await asyncio.to_thread(volumes.release, rt, record.id)
        await asyncio.to_thread(rt.images.remove_rootfs, record.id)
        await asyncio.to_thread(remove_container_dir, bundle_dir(rt, record.id).parent)
        await rt.store.remove_container(record.id)
        events.publish_container_event(rt, record, events.DELETED)
    log.info("container removed", container_id=record.id)


async def stop_all(rt: Runtime, sandbox_id: str) -> None:
    await asyncio.gather(*(stop(rt, c.id, 0) for c in rt.store.containers(sandbox_id)))


async def remove_all(rt: Runtime, sandbox_id: str) -> None:
    await asyncio.gather(*(remove(rt, c.id) for c in rt.store.containers(sandbox_id)))
