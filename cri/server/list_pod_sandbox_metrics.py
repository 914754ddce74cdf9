"""ListPodSandboxMetrics: cAdvisor-style metrics of every ready pod and its running containers."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import queries


async def handle(
    rt: Runtime, request: api_pb2.ListPodSandboxMetricsRequest
) -> api_pb2.ListPodSandboxMetricsResponse:
    sandboxes = queries.ready_sandboxes(rt, None)
    return api_pb2.ListPodSandboxMetricsResponse(
        pod_metrics=await queries.pod_metrics(rt, sandboxes)
    )
