"""Container lifecycle events for GetContainerEvents (the kubelet's evented PLEG).

::

    containers.py / pods.py ──publish──► EventBus ──► queue per subscriber (bounded)
                                                         │
                                    GetContainerEvents ◄─┘  one stream per subscriber

Publishing never blocks and never waits for a subscriber: it puts the event in every
subscriber's queue with ``put_nowait``. A subscriber whose queue is full has fallen too far
behind to be trusted with a consistent picture, so it is dropped: its stream ends with
RESOURCE_EXHAUSTED (the kubelet counts that as a stream failure and relists), never with
silently missing events. Events are built and published on the event loop thread. At
shutdown :meth:`EventBus.close` ends every stream (after what is queued), so an open
subscription does not hold berthd for its whole grace period.

Each event carries the pod's status (with metadata, which the kubelet dereferences) and the
statuses of all the pod's containers as they are after the change, like containerd. Sandbox
events use the sandbox id as ``container_id`` (the kubelet drops a pod from its cache on the
DELETED event whose id is the sandbox's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

import structlog

from cri import errors, views
from cri.api.v1 import api_pb2
from cri.store import ContainerRecord, SandboxRecord

if TYPE_CHECKING:
    from cri.runtime import Runtime

log = structlog.get_logger(__name__)

CREATED = api_pb2.CONTAINER_CREATED_EVENT
STARTED = api_pb2.CONTAINER_STARTED_EVENT
STOPPED = api_pb2.CONTAINER_STOPPED_EVENT
DELETED = api_pb2.CONTAINER_DELETED_EVENT

DEFAULT_BUFFER = 1024  # events a subscriber may lag behind before it is dropped
_DROPPED, _ENDED = "dropped", "ended"

EventKind: TypeAlias = api_pb2.ContainerEventType.ValueType


class SubscriberTooSlow(errors.ResourceExhausted):
    """The subscriber fell more than its buffer behind and was dropped."""


class Subscription:
    """One subscriber's bounded queue; iterate it to receive events."""

    def __init__(self, buffer: int) -> None:
        # DROPPED/ENDED are markers; the queue holds one slot more so a marker always fits.
        self._queue: asyncio.Queue[api_pb2.ContainerEventResponse | str] = asyncio.Queue(buffer + 1)
        self._buffer = buffer
        self.dropped = False
        self.ended = False

    def offer(self, event: api_pb2.ContainerEventResponse) -> bool:
        """Queue ``event``; False (and the subscriber is dropped) when it is full."""
        if self.dropped or self.ended:
            return False
        if self._queue.qsize() < self._buffer:
            self._queue.put_nowait(event)
            return True
        self.dropped = True
        while not self._queue.empty():  # what is queued is no use to a subscriber that
            self._queue.get_nowait()  # must relist: free it now
        self._queue.put_nowait(_DROPPED)
        return False

    def end(self) -> None:
        """No more events: the subscriber gets what is queued, then the end of the stream."""
        if not (self.dropped or self.ended):
            self.ended = True
            self._queue.put_nowait(_ENDED)

    async def next(self) -> api_pb2.ContainerEventResponse:
        """The next event; SubscriberTooSlow once the subscriber has been dropped,
        StopAsyncIteration once the bus is closed and the queue drained."""
        event = await self._queue.get()
        if isinstance(event, str):
            self._queue.put_nowait(event)  # every later call ends the same way
            if event == _ENDED:
                raise StopAsyncIteration
            raise SubscriberTooSlow(
                f"container event subscriber fell more than {self._buffer} events behind and"
                " was dropped; relist and subscribe again"
            )
        return event

    def __aiter__(self) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        while True:
            try:
                event = await self.next()
            except StopAsyncIteration:
                return
            yield event


class EventBus:
    """Fan-out of container events to any number of subscribers."""

    def __init__(self, *, buffer: int = DEFAULT_BUFFER) -> None:
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: api_pb2.ContainerEventResponse) -> None:
        """Deliver to every subscriber without waiting; drop the ones that are full."""
        for sub in list(self._subscribers):
            if not sub.offer(event):
                self._subscribers.discard(sub)
                log.warning("event subscriber dropped", buffer=self._buffer)

    def close(self) -> None:
        """End every stream (at shutdown, so open GetContainerEvents calls finish instead of
        holding the server for its whole grace period); later subscriptions end at once."""
        self._closed = True
        for sub in self._subscribers:
            sub.end()
        self._subscribers.clear()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A subscription for the duration of the ``async with`` block."""
        sub = Subscription(self._buffer)
        if self._closed:
            sub.end()
        else:
            self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)


def build_event(
    rt: Runtime, sandbox: SandboxRecord, container_id: str, kind: EventKind
) -> api_pb2.ContainerEventResponse:
    return api_pb2.ContainerEventResponse(
        container_id=container_id,
        container_event_type=kind,
        created_at=time.time_ns(),
        pod_sandbox_status=views.sandbox_status(sandbox),
        containers_statuses=[views.container_status(c) for c in rt.store.containers(sandbox.id)],
    )


def publish_container_event(rt: Runtime, record: ContainerRecord, kind: EventKind) -> None:
    """Publish a container's event; call after the store reflects the change. A container
    whose sandbox is already gone has no pod to report and is skipped."""
    if rt.events.subscribers == 0:
        return  # nobody listens: do not build statuses for nothing
    sandbox = rt.store.find_sandbox(record.sandbox_id)
    if sandbox is not None:
        rt.events.publish(build_event(rt, sandbox, record.id, kind))


def publish_sandbox_event(rt: Runtime, sandbox: SandboxRecord, kind: EventKind) -> None:
    """Publish a sandbox's event; for DELETED pass the record as it was before removal."""
    if rt.events.subscribers == 0:
        return
    rt.events.publish(build_event(rt, sandbox, sandbox.id, kind))
