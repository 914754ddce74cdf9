"""Version: the kubelet refuses any ``version`` other than 0.1.0."""

from __future__ import annotations

from cri import __version__
from cri.api.v1 import api_pb2
from cri.runtime import Runtime

KUBELET_API_VERSION = "0.1.0"


async def handle(rt: Runtime, request: api_pb2.VersionRequest) -> api_pb2.VersionResponse:
    return api_pb2.VersionResponse(
        version=KUBELET_API_VERSION,
        runtime_name="berth",
        runtime_version=__version__,
        runtime_api_version="v1",
    )
