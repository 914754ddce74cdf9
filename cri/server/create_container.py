"""CreateContainer: rootfs, OCI bundle and a shim with the container created (not started)."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.CreateContainerRequest
) -> api_pb2.CreateContainerResponse:
    record = await containers.create(rt, request.pod_sandbox_id, request.config)
    return api_pb2.CreateContainerResponse(container_id=record.id)
