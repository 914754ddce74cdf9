"""StreamPodSandboxStats: ListPodSandboxStats' result in pages, each sampled as it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri import paging
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.StreamPodSandboxStatsRequest
) -> AsyncIterator[api_pb2.StreamPodSandboxStatsResponse]:
    wanted = request.filter if request.HasField("filter") else None
    for page in paging.pages(queries.ready_sandboxes(rt, wanted)):
        stats = await queries.pod_stats(rt, page)
        yield api_pb2.StreamPodSandboxStatsResponse(pod_sandbox_stats=stats)
