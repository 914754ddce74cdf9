"""PodSandboxStats: one pod's CPU, memory, network, processes and its running containers."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.PodSandboxStatsRequest
) -> api_pb2.PodSandboxStatsResponse:
    record = rt.store.sandbox(request.pod_sandbox_id)
    [stats] = await queries.pod_stats(rt, [record])
    return api_pb2.PodSandboxStatsResponse(stats=stats)
