"""RemoveImage: removes the image with all its tags; removing what is gone succeeds."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.RemoveImageRequest) -> api_pb2.RemoveImageResponse:
    await rt.images.remove(request.image.image)
    return api_pb2.RemoveImageResponse()
