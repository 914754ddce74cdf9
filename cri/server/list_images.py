"""ListImages: every image, or those matching the filter's reference."""

from __future__ import annotations

from cri import errors
from cri.api.v1 import api_pb2
from cri.images import to_cri
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if not wanted:
        images = rt.images.list()
    else:
        try:
            images = [rt.images.get(wanted)]
        except errors.NotFound:
            images = []
    return api_pb2.ListImagesResponse(images=[to_cri(i) for i in images])
