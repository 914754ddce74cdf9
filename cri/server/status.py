"""Status: RuntimeReady, NetworkReady, the runtime handlers and their features.

The kubelet calls this every 5 s; NetworkReady follows the CNI config directory without a
restart. With ``verbose`` the effective configuration is returned as JSON in ``info``.
"""

from __future__ import annotations

import json

from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.StatusRequest) -> api_pb2.StatusResponse:
    conditions = [_runtime_condition(rt), _network_condition(rt)]
    response = api_pb2.StatusResponse(
        status=api_pb2.RuntimeStatus(conditions=conditions),
        runtime_handlers=_handlers(rt),
        features=api_pb2.RuntimeFeatures(
            supplemental_groups_policy=rt.features.supplemental_groups_policy,
        ),
    )
    if request.verbose:
        response.info["config"] = json.dumps(rt.describe(), sort_keys=True)
    return response


def _runtime_condition(rt: Runtime) -> api_pb2.RuntimeCondition:
    problem = rt.runtime_problem()
    return api_pb2.RuntimeCondition(
        type="RuntimeReady",
        status=problem is None,
        reason="" if problem is None else "RuntimeNotReady",
        message=problem or "",
    )


def _network_condition(rt: Runtime) -> api_pb2.RuntimeCondition:
    ready, reason, message = rt.network_status()
    return api_pb2.RuntimeCondition(
        type="NetworkReady", status=ready, reason=reason, message=message
    )


def _handlers(rt: Runtime) -> list[api_pb2.RuntimeHandler]:
    handlers = []
    # The default handler is also reported under the empty name, as the kubelet expects.
    for name in ("", *sorted(rt.config.runtimes)):
        features = rt.handler_features(name or rt.config.default_runtime)
        handlers.append(api_pb2.RuntimeHandler(name=name, features=features))
    return handlers
