"""ListPodSandbox: every sandbox, or those matching id (prefix), state and labels."""

from __future__ import annotations

from cri import views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.ListPodSandboxRequest
) -> api_pb2.ListPodSandboxResponse:
    f = request.filter
    items = [
        views.sandbox_item(s)
        for s in rt.store.sandboxes()
        if not request.HasField("filter") or views.sandbox_matches(s, f)
    ]
    return api_pb2.ListPodSandboxResponse(items=items)
