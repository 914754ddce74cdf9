"""PodSandboxStatus: state, IPs, namespaces, labels and annotations as given."""

from __future__ import annotations

import json
import time

from cri import views
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(
    rt: Runtime, request: api_pb2.PodSandboxStatusRequest
) -> api_pb2.PodSandboxStatusResponse:
    record = rt.store.sandbox(request.pod_sandbox_id)
    response = api_pb2.PodSandboxStatusResponse(
        status=views.sandbox_status(record),
        containers_statuses=[views.container_status(c) for c in rt.store.containers(record.id)],
        timestamp=time.time_ns(),
    )
    if request.verbose:
        response.info["info"] = json.dumps(
            {
                "namespaces": record.namespaces,
                "filesDir": record.files_dir,
                "cgroupParent": record.cgroup_parent,
                "networkReady": record.network_ready,
            }
        )
    return response
