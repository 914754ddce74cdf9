"""ListPodSandbox: every sandbox, or those matching id (prefix), state and labels."""

from __future__ import annotations

from cri import views
from cri.api.v1 import api_pb2
from cri.listing import EncodedItems
from cri.runtime import Runtime
from cri.store import SandboxRecord

_ITEMS: EncodedItems[SandboxRecord] = EncodedItems(views.sandbox_item)


async def handle(
    rt: Runtime, request: api_pb2.ListPodSandboxRequest
) -> api_pb2.ListPodSandboxResponse:
    f = request.filter
    has_filter = request.HasField("filter")
    records = (s for s in rt.store.sandboxes() if not has_filter or views.sandbox_matches(s, f))
    return _ITEMS.response(api_pb2.ListPodSandboxResponse, records)
