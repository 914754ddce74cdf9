"""What the stats and metrics RPCs select from the store, and the collector calls for them.

As the CRI says, the list calls report running containers and ready pods; a single
ContainerStats/PodSandboxStats call reports the object in any state (cgroup sections only
while it runs).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from cri import views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import podmetrics
from cri.store import ContainerRecord, SandboxRecord

RUNNING = api_pb2.CONTAINER_RUNNING
READY = api_pb2.SANDBOX_READY


def container_matches(record: ContainerRecord, f: api_pb2.ContainerStatsFilter) -> bool:
    if not views.id_matches(record.id, f.id):
        return False
    if not views.id_matches(record.sandbox_id, f.pod_sandbox_id):
        return False
    return views.labels_match(record.config.labels, f.label_selector)


def sandbox_matches(record: SandboxRecord, f: api_pb2.PodSandboxStatsFilter) -> bool:
    return views.id_matches(record.id, f.id) and views.labels_match(
        record.config.labels, f.label_selector
    )


def running_containers(
    rt: Runtime, f: api_pb2.ContainerStatsFilter | None
) -> list[ContainerRecord]:
    return [
        c
        for c in rt.store.containers()
        if c.state == RUNNING and (f is None or container_matches(c, f))
    ]


def ready_sandboxes(rt: Runtime, f: api_pb2.PodSandboxStatsFilter | None) -> list[SandboxRecord]:
    return [
        s for s in rt.store.sandboxes() if s.state == READY and (f is None or sandbox_matches(s, f))
    ]


def shared_parents(sandboxes: Iterable[SandboxRecord]) -> frozenset[str]:
    """Cgroup parents named by more than one pod: none of those pods has a cgroup of its own."""
    counts = Counter(s.cgroup_parent for s in sandboxes if s.cgroup_parent)
    return frozenset(p for p, n in counts.items() if n > 1)


def by_pod(containers: Iterable[ContainerRecord]) -> dict[str, list[ContainerRecord]]:
    grouped: dict[str, list[ContainerRecord]] = defaultdict(list)
    for c in containers:
        grouped[c.sandbox_id].append(c)
    return grouped


async def container_stats(
    rt: Runtime, records: Sequence[ContainerRecord]
) -> list[api_pb2.ContainerStats]:
    return await rt.stats.containers(records)


async def pod_stats(
    rt: Runtime, sandboxes: Sequence[SandboxRecord]
) -> list[api_pb2.PodSandboxStats]:
    wanted = {s.id for s in sandboxes}
    containers = by_pod(c for c in rt.store.containers() if c.sandbox_id in wanted)
    shared = shared_parents(rt.store.sandboxes())
    return await rt.stats.pods(sandboxes, containers, shared_parents=shared)


async def pod_metrics(
    rt: Runtime, sandboxes: Sequence[SandboxRecord]
) -> list[api_pb2.PodSandboxMetrics]:
    wanted = {s.id for s in sandboxes}
    containers = by_pod(c for c in rt.store.containers() if c.sandbox_id in wanted)
    return await podmetrics.list_pod_metrics(rt.stats, sandboxes, containers)
