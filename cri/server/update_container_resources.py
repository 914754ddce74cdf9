"""UpdateContainerResources: new CPU/memory limits for a container (see cri.updates)."""

from __future__ import annotations

from cri import errors, updates
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.UpdateContainerResourcesRequest
) -> api_pb2.UpdateContainerResourcesResponse:
    if not request.HasField("linux"):
        record = rt.store.container(request.container_id)
        if request.HasField("windows"):
            raise errors.InvalidArgument(f"container {record.id}: windows resources on Linux")
        return api_pb2.UpdateContainerResourcesResponse()
    await updates.update_container(rt, request.container_id, request.linux)
    return api_pb2.UpdateContainerResourcesResponse()
