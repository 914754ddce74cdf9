"""ContainerStatus: state, times, exit code and reason, image, mounts, log path, user."""

from __future__ import annotations

import json

from cri import views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.ContainerStatusRequest
) -> api_pb2.ContainerStatusResponse:
    record = rt.store.container(request.container_id)
    response = api_pb2.ContainerStatusResponse(status=views.container_status(record))
    if request.verbose:
        response.info["info"] = json.dumps(
            {
                "sandboxID": record.sandbox_id,
                "pid": record.pid,
                "runtimeHandler": record.runtime_handler,
                "imageID": record.image_id,
            }
        )
    return response
