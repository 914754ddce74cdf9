"""StopContainer: stop signal, SIGKILL after the timeout; idempotent, unknown id is fine."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.StopContainerRequest
) -> api_pb2.StopContainerResponse:
    record = rt.store.find_container(request.container_id)
    if record is not None:
        await containers.stop(rt, record.id, max(0, request.timeout))
    return api_pb2.StopContainerResponse()
