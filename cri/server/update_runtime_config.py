"""UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR.

berth does not generate CNI configs from a template (the CNI config dir is the administrator's,
as with CRI-O), so the CIDR only becomes visible in ``Status(verbose)`` info as ``podCIDR``;
a malformed CIDR is INVALID_ARGUMENT.
"""

from __future__ import annotations

import ipaddress

import structlog

from cri import errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime

log = structlog.get_logger(__name__)


async def handle(
    rt: Runtime, request: api_pb2.UpdateRuntimeConfigRequest
) -> api_pb2.UpdateRuntimeConfigResponse:
    cidr = request.runtime_config.network_config.pod_cidr
    for part in filter(None, (c.strip() for c in cidr.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise errors.InvalidArgument(f"UpdateRuntimeConfig: bad pod CIDR {part!r}") from None
    if cidr != rt.pod_cidr:
        log.info("pod cidr set", pod_cidr=cidr)
        rt.pod_cidr = cidr
    return api_pb2.UpdateRuntimeConfigResponse()
