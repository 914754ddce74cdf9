"""StreamImages: ListImages' result in pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cri import errors, paging
from cri.api.v1 import api_pb2
from cri.images import to_cri
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StreamImagesRequest
) -> AsyncIterator[api_pb2.StreamImagesResponse]:
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if not wanted:
        images = await asyncio.to_thread(rt.images.list)
    else:
        try:
            images = [rt.images.get(wanted)]
        except errors.NotFound:
            images = []
    for page in paging.pages(images):
        yield api_pb2.StreamImagesResponse(images=[to_cri(i) for i in page])
