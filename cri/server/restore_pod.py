"""RestorePod: refused with the reason (see cri.checkpoint)."""

from __future__ import annotations

from cri import checkpoint, errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.RestorePodRequest) -> api_pb2.RestorePodResponse:
    if not request.checkpoint_path:
        raise errors.InvalidArgument("RestorePod: checkpoint_path is empty")
    await checkpoint.refuse(f"restore a pod from {request.checkpoint_path}")
    return api_pb2.RestorePodResponse()  # pragma: no cover - refuse always raises
