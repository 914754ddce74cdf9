"""ListMetricDescriptors: the cAdvisor-named metric families berth reports on this host."""

from __future__ import annotations

from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.stats import cadvisor


async def handle(
    rt: Runtime, request: api_pb2.ListMetricDescriptorsRequest
) -> api_pb2.ListMetricDescriptorsResponse:
    descriptors = cadvisor.descriptors(pressure=rt.stats.layout.v2)
    return api_pb2.ListMetricDescriptorsResponse(descriptors=descriptors)
