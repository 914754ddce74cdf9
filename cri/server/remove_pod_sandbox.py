"""RemovePodSandbox: remove the pod, its containers, namespaces and files; idempotent."""

from __future__ import annotations

from cri import pods
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.RemovePodSandboxRequest
) -> api_pb2.RemovePodSandboxResponse:
    record = rt.store.find_sandbox(request.pod_sandbox_id)
    if record is not None:
        await pods.remove(rt, record.id)
    return api_pb2.RemovePodSandboxResponse()
