"""RemoveContainer: force-stops a running container, frees its rootfs; idempotent."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.RemoveContainerRequest
) -> api_pb2.RemoveContainerResponse:
    record = rt.store.find_container(request.container_id)
    if record is not None:
        await containers.remove(rt, record.id)
    return api_pb2.RemoveContainerResponse()
