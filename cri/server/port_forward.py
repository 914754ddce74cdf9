"""PortForward: a one-time URL for forwarding ports into a ready pod's network."""

from __future__ import annotations

from cri import errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.PortForwardRequest) -> api_pb2.PortForwardResponse:
    record = rt.store.sandbox(request.pod_sandbox_id)
    if record.state != api_pb2.SANDBOX_READY:
        raise errors.FailedPrecondition(f"pod sandbox {record.id} is not ready")
    request.pod_sandbox_id = record.id
    return api_pb2.PortForwardResponse(url=rt.streaming.get_port_forward(request))
