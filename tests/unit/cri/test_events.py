from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cri import events
from cri.api.v1 import api_pb2
from cri.events import EventBus, SubscriberTooSlow
from cri.runtime import Runtime
from cri.store import ContainerRecord, SandboxRecord, Store


def event(cid: str) -> api_pb2.ContainerEventResponse:
    return api_pb2.ContainerEventResponse(container_id=cid)


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus(buffer=10)
    async with bus.subscribe() as a, bus.subscribe() as b:
        assert bus.subscribers == 2
        for i in range(3):
            bus.publish(event(str(i)))
        for sub in (a, b):
            assert [(await sub.next()).container_id for _ in range(3)] == ["0", "1", "2"]
    assert bus.subscribers == 0


async def test_a_slow_subscriber_is_dropped_with_an_error_and_others_continue() -> None:
    bus = EventBus(buffer=2)
    async with bus.subscribe() as slow, bus.subscribe() as fast:
        bus.publish(event("0"))
        assert (await fast.next()).container_id == "0"
        bus.publish(event("1"))
        assert (await fast.next()).container_id == "1"
        bus.publish(event("2"))  # slow holds 0, 1: full -> dropped
        assert bus.subscribers == 1
        assert (await fast.next()).container_id == "2"
        with pytest.raises(SubscriberTooSlow) as info:
            await slow.next()
        assert info.value.kind == "resource_exhausted"
        with pytest.raises(SubscriberTooSlow):  # and stays failed
            await slow.next()


async def test_publish_never_waits_for_a_subscriber() -> None:
    bus = EventBus(buffer=1)
    async with bus.subscribe():
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(10_000):
            bus.publish(event(str(i)))  # synchronous; a waiting publish could not return
        assert loop.time() - started < 1


async def test_iteration_ends_with_the_error_when_dropped() -> None:
    bus = EventBus(buffer=1)
    received: list[str] = []
    async with bus.subscribe() as sub:
        bus.publish(event("a"))
        bus.publish(event("b"))  # dropped before reading anything
        with pytest.raises(SubscriberTooSlow):
            async for e in sub:
                received.append(e.container_id)
    assert received == []


async def test_a_waiting_subscriber_wakes_on_publish() -> None:
    bus = EventBus()
    async with bus.subscribe() as sub:
        waiter = asyncio.create_task(sub.next())
        await asyncio.sleep(0)
        bus.publish(event("x"))
        assert (await asyncio.wait_for(waiter, 5)).container_id == "x"


def sandbox_record() -> SandboxRecord:
    return SandboxRecord(
        id="p1",
        config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="pod", namespace="ns", uid="uid-1")
        ),
        runtime_handler="runc",
        created_at=1,
    )


def container_record(cid: str, state: int) -> ContainerRecord:
    return ContainerRecord(
        id=cid,
        sandbox_id="p1",
        config=api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=cid)),
        image_id="sha256:i",
        image_ref="sha256:i",
        image_name="img",
        created_at=1,
        runtime_handler="runc",
        state=state,
    )


@pytest.fixture
async def rt(tmp_path: Path) -> Any:
    store = Store(tmp_path / "meta.db")
    await store.open()
    yield SimpleNamespace(store=store, events=EventBus())
    await store.close()


async def test_container_event_carries_pod_status_and_all_container_statuses(rt: Any) -> None:
    await rt.store.add_sandbox(sandbox_record())
    c1 = container_record("c1", api_pb2.CONTAINER_RUNNING)
    await rt.store.add_container(c1)
    await rt.store.add_container(container_record("c2", api_pb2.CONTAINER_EXITED))
    async with rt.events.subscribe() as sub:
        events.publish_container_event(cast(Runtime, rt), c1, events.STARTED)
        got = await sub.next()
    assert got.container_id == "c1"
    assert got.container_event_type == api_pb2.CONTAINER_STARTED_EVENT
    assert got.created_at > 0
    assert got.pod_sandbox_status.metadata.uid == "uid-1"
    assert {s.id: s.state for s in got.containers_statuses} == {
        "c1": api_pb2.CONTAINER_RUNNING,
        "c2": api_pb2.CONTAINER_EXITED,
    }


async def test_sandbox_deleted_event_uses_the_sandbox_id(rt: Any) -> None:
    record = sandbox_record()
    async with rt.events.subscribe() as sub:
        events.publish_sandbox_event(cast(Runtime, rt), record, events.DELETED)
        got = await sub.next()
    assert got.container_id == "p1"
    assert got.container_event_type == api_pb2.CONTAINER_DELETED_EVENT
    assert got.pod_sandbox_status.metadata.name == "pod"


async def test_container_of_a_removed_sandbox_publishes_nothing(rt: Any) -> None:
    async with rt.events.subscribe() as sub:
        events.publish_container_event(
            cast(Runtime, rt), container_record("c1", api_pb2.CONTAINER_EXITED), events.STOPPED
        )
        bus: EventBus = rt.events
        bus.publish(event("marker"))
        assert (await sub.next()).container_id == "marker"


async def test_close_ends_streams_after_what_is_queued() -> None:
    bus = EventBus()
    async with bus.subscribe() as sub:
        bus.publish(event("last"))
        bus.close()
        bus.publish(event("after close"))  # nobody gets it
        assert [e.container_id async for e in sub] == ["last"]
    async with bus.subscribe() as late:
        assert [e async for e in late] == []
    assert bus.subscribers == 0
