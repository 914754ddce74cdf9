"""CheckpointPod: refused with the reason (see cri.checkpoint)."""

from __future__ import annotations

from cri import checkpoint
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.CheckpointPodRequest
) -> api_pb2.CheckpointPodResponse:
    record = rt.store.sandbox(request.pod_sandbox_id)
    await checkpoint.refuse(f"checkpoint pod sandbox {record.id}")
    return api_pb2.CheckpointPodResponse()  # pragma: no cover - refuse always raises
