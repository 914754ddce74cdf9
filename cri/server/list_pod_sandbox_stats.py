"""ListPodSandboxStats: stats of the ready pods matching id and labels."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.ListPodSandboxStatsRequest
) -> api_pb2.ListPodSandboxStatsResponse:
    wanted = request.filter if request.HasField("filter") else None
    sandboxes = queries.ready_sandboxes(rt, wanted)
    return api_pb2.ListPodSandboxStatsResponse(stats=await queries.pod_stats(rt, sandboxes))
