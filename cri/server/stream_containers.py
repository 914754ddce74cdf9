"""StreamContainers: ListContainers' result in pages."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri import paging, views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StreamContainersRequest
) -> AsyncIterator[api_pb2.StreamContainersResponse]:
    has_filter = request.HasField("filter")
    items = [
        views.container_item(c)
        for c in rt.store.containers()
        if not has_filter or views.container_matches(c, request.filter)
    ]
    for page in paging.pages(items):
        yield api_pb2.StreamContainersResponse(containers=page)
