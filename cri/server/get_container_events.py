"""GetContainerEvents: container (and sandbox) lifecycle events as they happen, until the
client goes away; RESOURCE_EXHAUSTED if it falls too far behind (see cri.events)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.GetEventsRequest
) -> AsyncIterator[api_pb2.ContainerEventResponse]:
    async with rt.events.subscribe() as subscription:
        async for event in subscription:
            yield event
