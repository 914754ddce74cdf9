"""The stats/stream/update handlers over a real store and a fake collector and shim."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.events import EventBus
from cri.runtime import Runtime
from cri.server import (
    checkpoint_container,
    get_container_events,
    list_container_stats,
    list_pod_sandbox_stats,
    pod_sandbox_stats,
    stream_container_stats,
    stream_containers,
    stream_pod_sandboxes,
    update_container_resources,
)
from cri.stats import messages
from cri.store import ContainerRecord, SandboxRecord, Store

RUNNING, EXITED = api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED


class FakeCollector:
    """Stats that only carry attributes, and a record of what was asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.shared: frozenset[str] = frozenset()
        self.invalidated: list[str] = []

    def invalidate(self, container_id: str) -> None:
        self.invalidated.append(container_id)

    async def containers(self, records: Sequence[ContainerRecord]) -> list[api_pb2.ContainerStats]:
        self.asked.append([r.id for r in records])
        return [messages.container_stats(r, None, None) for r in records]

    async def pods(
        self,
        sandboxes: Sequence[SandboxRecord],
        containers: Mapping[str, Sequence[ContainerRecord]],
        *,
        shared_parents: frozenset[str] = frozenset(),
    ) -> list[api_pb2.PodSandboxStats]:
        self.shared = shared_parents
        return [
            messages.pod_stats(
                s,
                None,
                None,
                [messages.container_stats(c, None, None) for c in containers.get(s.id, ())],
            )
            for s in sandboxes
        ]


class FakeTask:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    async def update(self, resources: Mapping[str, Any]) -> None:
        self.updates.append(dict(resources))


def sandbox(sid: str, *, parent: str = "", state: int = api_pb2.SANDBOX_READY) -> SandboxRecord:
    return SandboxRecord(
        id=sid,
        config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=sid, namespace="ns", uid=sid),
            labels={"pod": sid},
        ),
        runtime_handler="runc",
        created_at=1,
        cgroup_parent=parent,
        state=state,
    )


def container(cid: str, sid: str, state: int = RUNNING, **labels: str) -> ContainerRecord:
    return ContainerRecord(
        id=cid,
        sandbox_id=sid,
        config=api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=cid), labels=labels or {"c": cid}
        ),
        image_id="sha256:i",
        image_ref="sha256:i",
        image_name="img",
        created_at=1,
        runtime_handler="runc",
        state=state,
        pid=100,
    )


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Any]:
    store = Store(tmp_path / "meta.db")
    await store.open()
    await store.add_sandbox(sandbox("pod-a", parent="/kube/a"))
    await store.add_sandbox(sandbox("pod-b", parent="/shared"))
    await store.add_sandbox(sandbox("pod-c", parent="/shared"))
    await store.add_sandbox(sandbox("pod-d", state=api_pb2.SANDBOX_NOTREADY))
    await store.add_container(container("ctr-a1", "pod-a", tier="web"))
    await store.add_container(container("ctr-a2", "pod-a", EXITED))
    await store.add_container(container("ctr-b1", "pod-b", tier="db"))
    task = FakeTask()
    shims = SimpleNamespace(get=_returning(task))
    host = SimpleNamespace(
        cgroup_v2=False, spec_host=SimpleNamespace(swap_controller=True, hugetlb_controller=False)
    )
    from cri.locks import KeyedLocks

    yield SimpleNamespace(
        store=store,
        stats=FakeCollector(),
        events=EventBus(),
        shims=shims,
        task=task,
        host=host,
        locks=KeyedLocks(),
    )
    await store.close()


def _returning(task: FakeTask) -> Any:
    async def get(container_id: str) -> FakeTask:
        return task

    return get


def R(rt: Any) -> Runtime:
    return cast(Runtime, rt)


async def test_list_container_stats_reports_running_containers_matching_the_filter(rt: Any) -> None:
    async def ids(f: api_pb2.ContainerStatsFilter | None) -> list[str]:
        req = (
            api_pb2.ListContainerStatsRequest(filter=f)
            if f
            else api_pb2.ListContainerStatsRequest()
        )
        resp = await list_container_stats.handle(R(rt), req)
        return sorted(s.attributes.id for s in resp.stats)

    assert await ids(None) == ["ctr-a1", "ctr-b1"]  # ctr-a2 exited
    assert await ids(api_pb2.ContainerStatsFilter(pod_sandbox_id="pod-a")) == ["ctr-a1"]
    assert await ids(api_pb2.ContainerStatsFilter(id="ctr-b")) == ["ctr-b1"]  # prefix
    assert await ids(api_pb2.ContainerStatsFilter(label_selector={"tier": "db"})) == ["ctr-b1"]
    assert await ids(api_pb2.ContainerStatsFilter(label_selector={"tier": "x"})) == []


async def test_list_pod_stats_reports_ready_pods_with_shared_parents_marked(rt: Any) -> None:
    resp = await list_pod_sandbox_stats.handle(R(rt), api_pb2.ListPodSandboxStatsRequest())
    assert sorted(s.attributes.id for s in resp.stats) == ["pod-a", "pod-b", "pod-c"]
    assert rt.stats.shared == frozenset({"/shared"})
    by_id = {s.attributes.id: s for s in resp.stats}
    assert [c.attributes.id for c in by_id["pod-a"].linux.containers] == ["ctr-a1", "ctr-a2"][:2]
    resp = await list_pod_sandbox_stats.handle(
        R(rt),
        api_pb2.ListPodSandboxStatsRequest(
            filter=api_pb2.PodSandboxStatsFilter(label_selector={"pod": "pod-c"})
        ),
    )
    assert [s.attributes.id for s in resp.stats] == ["pod-c"]


async def test_single_pod_stats_of_any_state_and_not_found(rt: Any) -> None:
    resp = await pod_sandbox_stats.handle(
        R(rt), api_pb2.PodSandboxStatsRequest(pod_sandbox_id="pod-d")
    )
    assert resp.stats.attributes.id == "pod-d"
    with pytest.raises(errors.NotFound):
        await pod_sandbox_stats.handle(R(rt), api_pb2.PodSandboxStatsRequest(pod_sandbox_id="nope"))


async def test_streams_send_pages_of_at_most_100(rt: Any) -> None:
    many = [container(f"c{i:03d}", "pod-a") for i in range(250)]
    rt.store = SimpleNamespace(containers=lambda sandbox_id=None: many, sandboxes=lambda: [])
    pages = [
        [c.id for c in page.containers]
        async for page in stream_containers.handle(R(rt), api_pb2.StreamContainersRequest())
    ]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [cid for p in pages for cid in p] == [c.id for c in many]
    stats_pages = [
        len(page.container_stats)
        async for page in stream_container_stats.handle(
            R(rt), api_pb2.StreamContainerStatsRequest()
        )
    ]
    assert stats_pages == [100, 100, 50]
    assert [len(ids) for ids in rt.stats.asked] == [100, 100, 50]  # sampled page by page


async def test_empty_stream_sends_nothing(rt: Any) -> None:
    request = api_pb2.StreamPodSandboxesRequest(filter=api_pb2.PodSandboxFilter(id="none"))
    assert [p async for p in stream_pod_sandboxes.handle(R(rt), request)] == []


async def test_update_container_resources_merges_applies_and_records(rt: Any) -> None:
    update = api_pb2.LinuxContainerResources(
        cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=1 << 26
    )
    await update_container_resources.handle(
        R(rt), api_pb2.UpdateContainerResourcesRequest(container_id="ctr-a1", linux=update)
    )
    assert rt.task.updates == [
        {"cpu": {"quota": 50000, "period": 100000}, "memory": {"limit": 1 << 26, "swap": 1 << 26}}
    ]
    assert rt.stats.invalidated == ["ctr-a1"]  # the collector re-reads the limits
    record = rt.store.container("ctr-a1")
    assert record.config.linux.resources.memory_limit_in_bytes == 1 << 26
    assert record.config.labels["tier"] == "web"  # the rest of the config is untouched
    await update_container_resources.handle(
        R(rt),
        api_pb2.UpdateContainerResourcesRequest(
            container_id="ctr-a1", linux=api_pb2.LinuxContainerResources(cpu_shares=256)
        ),
    )
    assert rt.task.updates[-1]["cpu"] == {"shares": 256, "quota": 50000, "period": 100000}


async def test_update_of_an_exited_container_only_records(rt: Any) -> None:
    await update_container_resources.handle(
        R(rt),
        api_pb2.UpdateContainerResourcesRequest(
            container_id="ctr-a2", linux=api_pb2.LinuxContainerResources(cpu_shares=256)
        ),
    )
    assert rt.task.updates == []
    assert rt.store.container("ctr-a2").config.linux.resources.cpu_shares == 256


async def test_update_rejects_what_the_host_cannot_apply(rt: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        await update_container_resources.handle(
            R(rt),
            api_pb2.UpdateContainerResourcesRequest(
                container_id="ctr-a1",
                linux=api_pb2.LinuxContainerResources(unified={"memory.high": "1M"}),  # v1 host
            ),
        )
    assert rt.task.updates == []


async def test_checkpoint_of_unknown_container_is_not_found(rt: Any) -> None:
    with pytest.raises(errors.NotFound):
        await checkpoint_container.handle(
            R(rt), api_pb2.CheckpointContainerRequest(container_id="x")
        )


async def test_get_container_events_streams_what_is_published(rt: Any) -> None:
    stream = get_container_events.handle(R(rt), api_pb2.GetEventsRequest())
    pending = stream.__anext__()
    import asyncio

    task = asyncio.ensure_future(pending)
    await asyncio.sleep(0)  # one turn: the handler subscribes and waits for an event
    assert rt.events.subscribers == 1
    rt.events.publish(api_pb2.ContainerEventResponse(container_id="c1"))
    assert (await task).container_id == "c1"
    await stream.aclose()
    assert rt.events.subscribers == 0
