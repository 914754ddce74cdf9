"""StartContainer: start a CREATED container."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StartContainerRequest
) -> api_pb2.StartContainerResponse:
    await containers.start(rt, rt.store.container(request.container_id).id)
    return api_pb2.StartContainerResponse()
