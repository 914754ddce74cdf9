"""RunPodSandbox: namespaces, pod files and network for a new pod, all or nothing."""

from __future__ import annotations

from cri import pods
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.RunPodSandboxRequest
) -> api_pb2.RunPodSandboxResponse:
    record = await pods.run(rt, request.config, request.runtime_handler)
    return api_pb2.RunPodSandboxResponse(pod_sandbox_id=record.id)
