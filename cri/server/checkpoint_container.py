"""CheckpointContainer: refused with the reason (see cri.checkpoint)."""

from __future__ import annotations

from cri import checkpoint
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.CheckpointContainerRequest
) -> api_pb2.CheckpointContainerResponse:
    record = rt.store.container(request.container_id)
    await checkpoint.refuse(f"checkpoint container {record.id}")
    return api_pb2.CheckpointContainerResponse()  # pragma: no cover - refuse always raises
