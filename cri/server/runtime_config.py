"""RuntimeConfig: the cgroup driver the kubelet must use; it never changes while we run."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime

_DRIVERS = {"systemd": api_pb2.SYSTEMD, "cgroupfs": api_pb2.CGROUPFS}


async def handle(
    rt: Runtime, request: api_pb2.RuntimeConfigRequest
) -> api_pb2.RuntimeConfigResponse:
    linux = api_pb2.LinuxRuntimeConfiguration(cgroup_driver=_DRIVERS[rt.config.cgroup_driver])
    return api_pb2.RuntimeConfigResponse(linux=linux)
