"""ContainerStats: CPU, memory, swap and writable layer of one container (any state; the
cgroup sections only while it runs)."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.ContainerStatsRequest
) -> api_pb2.ContainerStatsResponse:
    record = rt.store.container(request.container_id)
    [stats] = await queries.container_stats(rt, [record])
    return api_pb2.ContainerStatsResponse(stats=stats)
