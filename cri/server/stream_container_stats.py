"""StreamContainerStats: ListContainerStats' result in pages, each page sampled as it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri import paging
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.StreamContainerStatsRequest
) -> AsyncIterator[api_pb2.StreamContainerStatsResponse]:
    wanted = request.filter if request.HasField("filter") else None
    for page in paging.pages(queries.running_containers(rt, wanted)):
        stats = await queries.container_stats(rt, page)
        yield api_pb2.StreamContainerStatsResponse(container_stats=stats)
