"""Exec: a one-time URL on the streaming server for an interactive exec."""

from __future__ import annotations

from cri import containers
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.ExecRequest) -> api_pb2.ExecResponse:
    request.container_id = containers.running(rt, request.container_id).id
    return api_pb2.ExecResponse(url=rt.streaming.get_exec(request))
