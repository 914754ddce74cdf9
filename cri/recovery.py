"""Restart recovery: make the store and the node agree again after berthd stopped or crashed.

What it assumes:

- The store is the truth for what the kubelet was told exists. Anything on the node without a
  store row was half-made by a call that never returned success (a crash between the first
  side effect and the store commit) and is removed: namespace pins, pod files, shims, bundles,
  rootfs snapshots, CNI attachments (via the CNI result cache).
- A shim outlives berthd. A live shim (pid alive, socket answers) is reconnected and its
  container watched; a dead one left ``exit.json`` if its container exited before it died;
  with no exit file the container is reported exited with reason ``Unknown``.
- A sandbox whose namespace pins are gone (the node rebooted: the state dir is a tmpfs) is
  NOTREADY; its network is gone with the namespace, but CNI DEL still runs on stop so IPAM
  leases are released.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import structlog

from cri import containers, netns, pods, volumes
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.store import ContainerRecord
from shim import api as shim_api

log = structlog.get_logger(__name__)


async def recover(rt: Runtime) -> None:
    for name in await asyncio.to_thread(rt.cni.remove_partial_writes):
        log.warning("removed a CNI cache file a crash cut short", file=name)
    await _recover_sandboxes(rt)
    await _recover_containers(rt)
    await _remove_orphans(rt)


async def _recover_sandboxes(rt: Runtime) -> None:
    for record in list(rt.store.sandboxes()):
        if record.state != api_pb2.SANDBOX_READY:
            try:
                await pods.release_network(rt, record)  # a stop the crash cut short
            except Exception as exc:  # the next StopPodSandbox retries it
                log.warning("pod network release failed", pod_id=record.id, error=str(exc))
            continue
        pins = [Path(p) for p in record.namespaces.values()]
        infra_alive = not record.infra_pid or await rt.shims.alive(record.id)
        if infra_alive and all(netns.is_pinned(p) for p in pins):
            continue
        log.warning("pod sandbox lost its namespaces", pod_id=record.id)
        await rt.store.update_sandbox(dataclasses.replace(record, state=api_pb2.SANDBOX_NOTREADY))


async def _recover_containers(rt: Runtime) -> None:
    for record in rt.store.containers():
        if record.state == api_pb2.CONTAINER_EXITED:
            continue
        if await rt.shims.alive(record.id):
            await _adopt(rt, record)
            continue
        state = rt.shims.exit_state(record.id)
        log.warning("shim gone", container_id=record.id, exit_recorded=state is not None)
        await containers.record_exit(rt, record, state)


async def _adopt(rt: Runtime, record: ContainerRecord) -> None:
    """Reconnect to a live shim; a CREATED record whose StartContainer was cut short by the
    crash learns from the shim whether the process started (and maybe exited) meanwhile."""
    if record.state == api_pb2.CONTAINER_CREATED:
        task = await rt.shims.get(record.id)
        state = await task.state()
        if state.status == shim_api.CREATED:
            return
        record = dataclasses.replace(
            record,
            state=api_pb2.CONTAINER_RUNNING,
            pid=state.pid,
            started_at=state.started_at_ns or record.created_at,
        )
        await rt.store.update_container(record)
    rt.watch(record.id)


async def _remove_orphans(rt: Runtime) -> None:
    sandbox_ids = {s.id for s in rt.store.sandboxes()}
    container_ids = {c.id for c in rt.store.containers()}
    half_made = _ids(rt.state / "netns") | _ids(rt.state / "pods") | set(rt.cni.cached_ids())
    for sandbox_id in half_made:
        if sandbox_id not in sandbox_ids:
            log.warning("removing half-created pod sandbox", pod_id=sandbox_id)
            await rt.cni.delete_cached(sandbox_id)
            await pods.release(rt, sandbox_id)
    for container_id in _ids(rt.state / "containers") | rt.shims.known_ids():
        if container_id not in container_ids and container_id not in sandbox_ids:
            log.warning("removing half-created container", container_id=container_id)
            await rt.shims.destroy(container_id)
            await asyncio.to_thread(volumes.release, rt, container_id)
            directory = rt.state / "containers" / container_id
            await asyncio.to_thread(containers.remove_container_dir, directory)
    for key in await asyncio.to_thread(rt.images.rootfs_keys):
        if volumes.owner_of(key) not in container_ids:
            await asyncio.to_thread(rt.images.remove_rootfs, key)
    await asyncio.to_thread(rt.images.recover)


def _ids(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir()}
