"""Attach: a one-time URL for attaching to a running container's stdio."""

from __future__ import annotations

from cri import errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.AttachRequest) -> api_pb2.AttachResponse:
    record = rt.store.container(request.container_id)
    if record.state != api_pb2.CONTAINER_RUNNING:
        raise errors.FailedPrecondition(f"container {record.id} is not running")
    request.container_id = record.id
    return api_pb2.AttachResponse(url=rt.streaming.get_attach(request))
