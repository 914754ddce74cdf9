"""StreamPodSandboxes: ListPodSandbox's result in pages."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cri import paging, views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StreamPodSandboxesRequest
) -> AsyncIterator[api_pb2.StreamPodSandboxesResponse]:
    has_filter = request.HasField("filter")
    items = [
        views.sandbox_item(s)
        for s in list(rt.store.sandboxes())
        if not has_filter or views.sandbox_matches(s, request.filter)
    ]
    for page in paging.pages(items):
        yield api_pb2.StreamPodSandboxesResponse(pod_sandboxes=page)
