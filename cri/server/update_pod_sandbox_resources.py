"""UpdatePodSandboxResources: record a pod's new resources (see cri.updates)."""

from __future__ import annotations

from cri import updates
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.UpdatePodSandboxResourcesRequest
) -> api_pb2.UpdatePodSandboxResourcesResponse:
    await updates.update_pod(
        rt,
        request.pod_sandbox_id,
        request.overhead if request.HasField("overhead") else None,
        request.resources if request.HasField("resources") else None,
    )
    return api_pb2.UpdatePodSandboxResourcesResponse()
