"""ReopenContainerLog: reopen the log file after the kubelet rotated it."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.ReopenContainerLogRequest
) -> api_pb2.ReopenContainerLogResponse:
    record = containers.running(rt, request.container_id)
    task = await rt.shims.get(record.id)
    await task.reopen_log()
    return api_pb2.ReopenContainerLogResponse()
