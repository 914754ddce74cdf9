"""UpdateContainerResources and UpdatePodSandboxResources.

Containers: the request is merged into the container's current resources (a zero or empty
field keeps the current value, as containerd does: the kubelet always sends the full set),
turned into OCI ``linux.resources`` by :mod:`cri.oci.resources` and applied through the shim
(``runc update``) while the container is CREATED or RUNNING. An EXITED container only has its
record updated. The merged resources replace ``config.linux.resources`` in the store record,
so the record always holds the limits in effect and ContainerStatus.resources reports them.

Pods: the kubelet calls this after it has resized the pod cgroup itself; berth records the
new overhead and resources in the sandbox's config. It writes the limits (resources plus
overhead, as the kubelet sizes pod cgroups) to the pod's cgroup only where they differ from
what is there, which is never the case under a kubelet, and only when the pod has a cgroup of
its own: a pod without a cgroup parent shares berth's default parent with every other such
pod, and limiting that would limit them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from cri import errors, validate
from cri.api.v1 import api_pb2
from cri.oci import resources as oci_resources
from cri.runtime import Runtime
from cri.stats.cgroupfs import CgroupDirs
from cri.stats.readers import parse_v1_limit, parse_v2_limit, read_text
from cri.store import ContainerRecord, SandboxRecord

log = structlog.get_logger(__name__)

_SCALARS = (
    "cpu_period",
    "cpu_quota",
    "cpu_shares",
    "memory_limit_in_bytes",
    "memory_swap_limit_in_bytes",
    "oom_score_adj",
    "cpuset_cpus",
    "cpuset_mems",
)
APPLIED_STATES = (api_pb2.CONTAINER_CREATED, api_pb2.CONTAINER_RUNNING)


def merge(
    current: api_pb2.LinuxContainerResources, update: api_pb2.LinuxContainerResources
) -> api_pb2.LinuxContainerResources:
    """``update`` over ``current``: set fields win, zero/empty ones keep the current value."""
    merged = api_pb2.LinuxContainerResources()
    merged.CopyFrom(current)
    for name in _SCALARS:
        value = getattr(update, name)
        if value:
            setattr(merged, name, value)
    if update.hugepage_limits:
        del merged.hugepage_limits[:]
        merged.hugepage_limits.extend(update.hugepage_limits)
    merged.unified.update(update.unified)
    return merged


async def update_container(
    rt: Runtime, container_id: str, update: api_pb2.LinuxContainerResources
) -> ContainerRecord:
    """Apply and record new limits. NotFound for an unknown id, InvalidArgument for limits
    the host cannot apply, the shim's errors when ``runc update`` refuses. Idempotent."""
    validate.resources("UpdateContainerResources: linux", update)
    async with rt.locks.hold(container_id):
        record = rt.store.container(container_id)
        merged = merge(record.config.linux.resources, update)
        spec = oci_resources.linux_resources(
            merged, cgroup_v2=rt.host.cgroup_v2, host=rt.host.spec_host
        )
        if record.state in APPLIED_STATES:
            task = await rt.shims.get(record.id)
            await task.update(spec)
            rt.stats.invalidate(record.id)
        config = api_pb2.ContainerConfig()
        config.CopyFrom(record.config)
        config.linux.resources.CopyFrom(merged)
        record = dataclasses.replace(record, config=config)
        await rt.store.update_container(record)
    log.info("container resources updated", container_id=record.id, resources=spec)
    return record


def status_resources(record: ContainerRecord) -> api_pb2.ContainerResources | None:
    """ContainerStatus.resources: the limits in effect (None if the container has none)."""
    linux = record.config.linux
    if not linux.HasField("resources"):
        return None
    return api_pb2.ContainerResources(linux=linux.resources)


# -- pods -------------------------------------------------------------------------------------


async def update_pod(
    rt: Runtime,
    sandbox_id: str,
    overhead: api_pb2.LinuxContainerResources | None,
    resources: api_pb2.LinuxContainerResources | None,
) -> SandboxRecord:
    """Record the pod-level resources and bring the pod's own cgroup in line (see module)."""
    for where, res in (("overhead", overhead), ("resources", resources)):
        if res is not None:
            validate.resources(f"UpdatePodSandboxResources: {where}", res)
    async with rt.locks.hold(sandbox_id):
        record = rt.store.sandbox(sandbox_id)
        config = api_pb2.PodSandboxConfig()
        config.CopyFrom(record.config)
        if overhead is not None:
            config.linux.overhead.CopyFrom(overhead)
        if resources is not None:
            config.linux.resources.CopyFrom(resources)
        record = dataclasses.replace(record, config=config)
        await rt.store.update_sandbox(record)
    dirs = await _own_pod_cgroup(rt, record)
    if dirs is not None and resources is not None:
        written = await asyncio.to_thread(apply_pod_limits, dirs, pod_limits(overhead, resources))
        log.info("pod cgroup resized", pod_id=record.id, files=written)
    return record


async def _own_pod_cgroup(rt: Runtime, sandbox: SandboxRecord) -> CgroupDirs | None:
    parents = [s.cgroup_parent for s in rt.store.sandboxes() if s.cgroup_parent]
    shared = frozenset(p for p in parents if parents.count(p) > 1)
    running = [c for c in rt.store.containers(sandbox.id) if c.state == api_pb2.CONTAINER_RUNNING]
    return await rt.stats.run(lambda _now: rt.stats.pod_cgroup(sandbox, running, shared))


def pod_limits(
    overhead: api_pb2.LinuxContainerResources | None, resources: api_pb2.LinuxContainerResources
) -> api_pb2.LinuxContainerResources:
    """The pod cgroup's limits: the containers' sum plus overhead, for the fields set."""
    total = api_pb2.LinuxContainerResources()
    total.CopyFrom(resources)
    if overhead is None:
        return total
    for name in ("cpu_shares", "cpu_quota", "memory_limit_in_bytes"):
        if getattr(resources, name) > 0:
            setattr(total, name, getattr(resources, name) + max(getattr(overhead, name), 0))
    return total


@dataclass(frozen=True, slots=True)
class _Setting:
    controller: str
    file: str
    value: str
    normalise: Callable[[str], object]  # file text -> a value comparable with ``value``


def apply_pod_limits(dirs: CgroupDirs, limits: api_pb2.LinuxContainerResources) -> list[str]:
    """Write each set limit whose file holds another value; returns the files written.

    FailedPrecondition when the kernel refuses (a memory limit below current usage).
    """
    written = []
    for s in _v2_settings(limits) if dirs.v2 else _v1_settings(limits):
        directory = dirs.dir(s.controller)
        if directory is None:
            continue
        path = directory / s.file
        if s.normalise(read_text(path)) == s.normalise(s.value):
            continue
        _write(path, s.value)
        written.append(str(path))
    return written


def _first_int(text: str) -> int:
    return int(text.split()[0])


def _words(text: str) -> str:
    return " ".join(text.split())


def _v1_settings(r: api_pb2.LinuxContainerResources) -> list[_Setting]:
    settings = []
    if r.cpu_shares > 0:
        settings.append(_Setting("cpu", "cpu.shares", str(r.cpu_shares), _first_int))
    if r.cpu_quota > 0:
        period = str(r.cpu_period or 100000)
        settings.append(_Setting("cpu", "cpu.cfs_period_us", period, _first_int))
        settings.append(_Setting("cpu", "cpu.cfs_quota_us", str(r.cpu_quota), _first_int))
    if r.memory_limit_in_bytes > 0:
        limit = str(r.memory_limit_in_bytes)
        settings.append(_Setting("memory", "memory.limit_in_bytes", limit, parse_v1_limit))
    return settings


def _v2_settings(r: api_pb2.LinuxContainerResources) -> list[_Setting]:
    settings = []
    if r.cpu_shares > 0:
        weight = str(shares_to_weight(r.cpu_shares))
        settings.append(_Setting("cpu", "cpu.weight", weight, _first_int))
    if r.cpu_quota > 0:
        cpu_max = f"{r.cpu_quota} {r.cpu_period or 100000}"
        settings.append(_Setting("cpu", "cpu.max", cpu_max, _words))
    if r.memory_limit_in_bytes > 0:
        limit = str(r.memory_limit_in_bytes)
        settings.append(_Setting("memory", "memory.max", limit, parse_v2_limit))
    return settings


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), runc's mapping."""
    return 1 + (max(shares, 2) - 2) * 9999 // 262142


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot set {path} to {value}: {exc.strerror}") from None
