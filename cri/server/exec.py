"""Exec: a one-time URL on the streaming server for an interactive exec."""

from __future__ import annotations

from cri import errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.ExecRequest) -> api_pb2.ExecResponse:
    record = rt.store.container(request.container_id)
    if record.state != api_pb2.CONTAINER_RUNNING:
        raise errors.FailedPrecondition(f"container {record.id} is not running")
    request.container_id = record.id
    return api_pb2.ExecResponse(url=rt.streaming.get_exec(request))
