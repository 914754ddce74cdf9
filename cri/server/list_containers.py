"""ListContainers: every container, or those matching id, sandbox, state and labels."""

from __future__ import annotations

from cri import views
from cri.api.v1 import api_pb2
from cri.listing import EncodedItems
from cri.runtime import Runtime
from cri.store import ContainerRecord

_ITEMS: EncodedItems[ContainerRecord] = EncodedItems(views.container_item)


async def handle(
    rt: Runtime, request: api_pb2.ListContainersRequest
) -> api_pb2.ListContainersResponse:
    has_filter = request.HasField("filter")
    records = (
        c
        for c in rt.store.containers()
        if not has_filter or views.container_matches(c, request.filter)
    )
    return _ITEMS.response(api_pb2.ListContainersResponse, records)
