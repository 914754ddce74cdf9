"""The stats collector: CPU, memory, processes, network and writable layers of containers
and pods, for the ContainerStats/PodSandboxStats RPCs and the CRI metrics.

Every call reads its files in one worker thread (one thread hop per RPC, not per container),
under one lock, because the CPU sampler and the caches are shared state.

Where the numbers come from:

- a running container's cgroup: found from its init pid's ``/proc/<pid>/cgroup`` once, then
  cached (it cannot move while the container runs);
- a pod's cgroup: the parent of its containers' cgroups (or, with no container running, the
  cgroup its ``cgroup_parent`` names under ``cgroup_root``) — but only when the pod has a
  cgroup parent of its own. Pods without one (crictl, critest) share berth's default parent,
  so their usage is the sum of their running containers';
- a pod's network: ``/proc/<pid>/net/dev`` of one of its running containers (the file follows
  that process's network namespace), else the pinned namespace through ``cri.netstat``;
- a writable layer: :class:`cri.stats.disk.WritableLayers`;
- a container's memory limits: read once and kept, because only berth writes them
  (UpdateContainerResources calls :meth:`StatsCollector.invalidate`); a pod's are the
  kubelet's and are read every time.

Caches forget a container or pod that no call has asked about for ``idle_ns``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cri import cgroups, netstat
from cri.api.v1 import api_pb2
from cri.netstat import InterfaceStats
from cri.stats import messages
from cri.stats.cgroupfs import CgroupDirs, CgroupLayout, parse_proc_cgroup
from cri.stats.cpu import DEFAULT_WINDOW_NS, CpuSampler
from cri.stats.disk import WritableLayers
from cri.stats.messages import CgroupSample
from cri.stats.readers import (
    CgroupFiles,
    Limits,
    read_cpu_usage,
    read_limits,
    read_memory,
    read_process_count,
    read_text,
)
from cri.store import ContainerRecord, SandboxRecord

T = TypeVar("T")

RUNNING = api_pb2.CONTAINER_RUNNING
IDLE_NS = 5 * 60 * 1_000_000_000
POD_KEY = "pod/"  # CPU sampler keys of pods, so they never collide with container ids

PodDirs = Callable[[SandboxRecord], CgroupDirs | None]


def configured_pod_dirs(
    layout: CgroupLayout, *, cgroup_root: str, driver: str, self_dirs: CgroupDirs
) -> PodDirs:
    """Where a pod's cgroup is by configuration: below ``cgroup_root`` (cgroupfs driver), or
    where systemd places the pod's slice (systemd driver, which ignores ``cgroup_root``)."""

    def locate(sandbox: SandboxRecord) -> CgroupDirs | None:
        if not sandbox.cgroup_parent:
            return None
        if driver == "systemd":
            return layout.at(cgroups.slice_path(cgroups.slice_name(sandbox.cgroup_parent)))
        path = cgroups.cgroupfs_path(cgroup_root, sandbox.cgroup_parent, "")
        return self_dirs.child(path) if cgroup_root == "self" else layout.at(path)

    return locate


@dataclass(slots=True, kw_only=True)
class _Place:
    """Where a running container's numbers are; valid while its init pid is the same."""

    pid: int
    dirs: CgroupDirs
    files: CgroupFiles
    limits: Limits | None = None  # read on first use, dropped by invalidate()


class StatsCollector:
    def __init__(
        self,
        *,
        layout: CgroupLayout,
        layers: WritableLayers,
        pod_dirs: PodDirs,
        proc: Path = Path("/proc"),
        clock: Callable[[], int] = time.time_ns,
        window_ns: int = DEFAULT_WINDOW_NS,
        idle_ns: int = IDLE_NS,
    ) -> None:
        self.layout = layout
        self.layers = layers
        self._pod_dirs = pod_dirs
        self._proc = proc
        self._clock = clock
        self._cpu = CpuSampler(window_ns)
        self._idle = idle_ns
        self._places: dict[str, _Place] = {}
        self._attrs: dict[str, tuple[api_pb2.ContainerConfig, api_pb2.ContainerAttributes]] = {}
        self._stale: set[str] = set()  # containers whose limits berth has just changed
        self._used: dict[str, int] = {}  # key -> when a call last asked for it
        self._swept = 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[int], T]) -> T:
        """Run ``fn(now)`` in a worker thread under the collector's lock."""

        def locked() -> T:
            with self._lock:
                now = self._clock()
                self._sweep(now)
                return fn(now)

        return await asyncio.to_thread(locked)

    async def containers(self, records: Sequence[ContainerRecord]) -> list[api_pb2.ContainerStats]:
        """Stats of each record, in order (cgroup sections only for running containers)."""
        return await self.run(lambda now: [self.container(r, now) for r in records])

    async def pods(
        self,
        sandboxes: Sequence[SandboxRecord],
        containers: Mapping[str, Sequence[ContainerRecord]],
        *,
        shared_parents: frozenset[str] = frozenset(),
    ) -> list[api_pb2.PodSandboxStats]:
        """Stats of each sandbox with its running containers (``containers`` by pod id).

        ``shared_parents``: cgroup parents that more than one pod names (see module doc).
        """

        def collect(now: int) -> list[api_pb2.PodSandboxStats]:
            return [self.pod(s, containers.get(s.id, ()), now, shared_parents) for s in sandboxes]

        return await self.run(collect)

    # -- containers (call with the lock held) ---------------------------------------------

    def container(self, record: ContainerRecord, now: int) -> api_pb2.ContainerStats:
        sample = self.sample_container(record, now)
        layer = self.layers.usage(record.id)
        self._used[record.id] = now
        return messages.container_stats(record, sample, layer, self._attributes(record))

    def _attributes(self, record: ContainerRecord) -> api_pb2.ContainerAttributes:
        """Built once per config (an update replaces the config object, and so this)."""
        cached = self._attrs.get(record.id)
        if cached is None or cached[0] is not record.config:
            cached = self._attrs[record.id] = (
                record.config,
                messages.container_attributes(record),
            )
        return cached[1]

    def container_dirs(self, record: ContainerRecord) -> CgroupDirs | None:
        """The running container's cgroup directories (None when it is not running)."""
        place = self._place(record)
        return None if place is None else place.dirs

    def _place(self, record: ContainerRecord) -> _Place | None:
        if record.state != RUNNING or record.pid <= 0:
            return None
        cached = self._places.get(record.id)
        if cached is not None and cached.pid == record.pid:
            return cached
        try:
            text = read_text(self._proc / str(record.pid) / "cgroup")
        except OSError:  # exited a moment ago
            return None
        dirs = self.layout.dirs(parse_proc_cgroup(text))
        try:
            files = CgroupFiles.of(dirs)
        except FileNotFoundError:  # no cpu or memory controller: nothing to sample
            return None
        place = self._places[record.id] = _Place(pid=record.pid, dirs=dirs, files=files)
        return place

    def invalidate(self, container_id: str) -> None:
        """Re-read the container's limits next time (berth changed them). Never waits for a
        running collection: it only marks the container."""
        self._stale.add(container_id)

    def sample_container(
        self, record: ContainerRecord, now: int, *, processes: bool = False
    ) -> CgroupSample | None:
        place = self._place(record)
        if place is None:
            return None
        files = place.files
        if record.id in self._stale:
            self._stale.discard(record.id)
            place.limits = None
        try:
            if place.limits is None:
                place.limits = read_limits(files)
            usage, memory = read_cpu_usage(files), read_memory(files, place.limits)
            count = read_process_count(files) if processes else None
        except (OSError, ValueError, KeyError):  # the cgroup went away with the container
            return None
        rate = self._cpu.rate(record.id, at=now, usage=usage, started_at=record.started_at)
        return CgroupSample(
            at=now, cpu_usage=usage, nano_cores=rate, memory=memory, processes=count
        )

    # -- pods (call with the lock held) ---------------------------------------------------

    def pod(
        self,
        sandbox: SandboxRecord,
        containers: Sequence[ContainerRecord],
        now: int,
        shared_parents: frozenset[str] = frozenset(),
    ) -> api_pb2.PodSandboxStats:
        running = [c for c in containers if c.state == RUNNING]
        samples = {c.id: self.sample_container(c, now, processes=True) for c in running}
        stats = [
            messages.container_stats(c, samples[c.id], self.layers.usage(c.id), self._attributes(c))
            for c in running
        ]
        for c in running:
            self._used[c.id] = now
        self._used[POD_KEY + sandbox.id] = now
        sample = self._pod_sample(sandbox, running, samples, now, shared_parents)
        return messages.pod_stats(sandbox, sample, self.pod_network(sandbox, running), stats)

    def pod_cgroup(
        self,
        sandbox: SandboxRecord,
        running: Sequence[ContainerRecord],
        shared_parents: frozenset[str] = frozenset(),
    ) -> CgroupDirs | None:
        """The pod's own cgroup, or None when it has none (no or a shared cgroup parent)."""
        if not sandbox.cgroup_parent or sandbox.cgroup_parent in shared_parents:
            return None
        for c in running:
            dirs = self.container_dirs(c)
            if dirs is not None:
                return dirs.parent()
        return self._pod_dirs(sandbox)

    def _pod_sample(
        self,
        sandbox: SandboxRecord,
        running: Sequence[ContainerRecord],
        samples: Mapping[str, CgroupSample | None],
        now: int,
        shared_parents: frozenset[str],
    ) -> CgroupSample:
        known = [s for s in samples.values() if s is not None]
        own = self.pod_cgroup(sandbox, running, shared_parents)
        if own is not None:
            try:
                return self._own_pod_sample(sandbox, own, known, now)
            except (OSError, ValueError, KeyError):
                pass  # not created yet, or gone: fall back to the containers
        rates = [s.nano_cores for s in known]
        nano = sum(r for r in rates if r is not None) if None not in rates else None
        return messages.summed(now, known, nano)

    def _own_pod_sample(
        self, sandbox: SandboxRecord, dirs: CgroupDirs, known: Sequence[CgroupSample], now: int
    ) -> CgroupSample:
        files = CgroupFiles.of(dirs)  # a pod's limits are the kubelet's: read every time
        usage, memory = read_cpu_usage(files), read_memory(files)
        if files.pids:
            processes = read_process_count(files)
        else:  # v1 without pids: cgroup.procs of the parent does not count its children
            processes = sum(s.processes or 0 for s in known)
        key = POD_KEY + sandbox.id
        rate = self._cpu.rate(key, at=now, usage=usage, started_at=sandbox.created_at)
        return CgroupSample(
            at=now, cpu_usage=usage, nano_cores=rate, memory=memory, processes=processes
        )

    def pod_network(
        self, sandbox: SandboxRecord, running: Sequence[ContainerRecord]
    ) -> dict[str, InterfaceStats] | None:
        """Interface counters of the pod's network namespace; None for host-network pods."""
        pin = sandbox.namespaces.get("net")
        if not pin:
            return None
        for c in running:
            if c.pid > 0:
                try:
                    return netstat.parse_net_dev(read_text(self._proc / str(c.pid) / "net/dev"))
                except OSError:
                    continue
        try:
            return netstat.read_interface_stats(Path(pin))
        except OSError:
            return None

    # -- cache hygiene --------------------------------------------------------------------

    def _sweep(self, now: int) -> None:
        if now - self._swept < self._idle // 5:
            return
        self._swept = now
        keep = {k for k, used in self._used.items() if now - used < self._idle}
        self._used = {k: self._used[k] for k in keep}
        self._cpu.forget(keep)
        self.layers.forget(keep)
        self._places = {k: v for k, v in self._places.items() if k in keep}
        self._attrs = {k: v for k, v in self._attrs.items() if k in keep}
