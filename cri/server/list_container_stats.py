"""ListContainerStats: stats of the running containers matching id, pod and labels."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.ListContainerStatsRequest
) -> api_pb2.ListContainerStatsResponse:
    wanted = request.filter if request.HasField("filter") else None
    records = queries.running_containers(rt, wanted)
    return api_pb2.ListContainerStatsResponse(stats=await queries.container_stats(rt, records))
