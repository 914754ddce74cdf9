"""Attach: a one-time URL for attaching to a running container's stdio."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.AttachRequest) -> api_pb2.AttachResponse:
    request.container_id = containers.running(rt, request.container_id).id
    return api_pb2.AttachResponse(url=rt.streaming.get_attach(request))
