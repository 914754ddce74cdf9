"""StopPodSandbox: stop its containers and release its network; idempotent."""

from __future__ import annotations

from cri import pods
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StopPodSandboxRequest
) -> api_pb2.StopPodSandboxResponse:
    record = rt.store.find_sandbox(request.pod_sandbox_id)
    if record is not None:
        await pods.stop(rt, record.id)
    return api_pb2.StopPodSandboxResponse()
