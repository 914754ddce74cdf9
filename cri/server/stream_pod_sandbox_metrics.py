"""StreamPodSandboxMetrics: ListPodSandboxMetrics' result in pages, each read as it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri import paging
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.StreamPodSandboxMetricsRequest
) -> AsyncIterator[api_pb2.StreamPodSandboxMetricsResponse]:
    for page in paging.pages(queries.ready_sandboxes(rt, None)):
        metrics = await queries.pod_metrics(rt, page)
        yield api_pb2.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=metrics)
