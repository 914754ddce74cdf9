"""The kubelet's two stats RPCs, timed; UNIMPLEMENTED becomes the figure's status."""

from __future__ import annotations

from functools import partial
from typing import Any

from cri.api.v1 import api_pb2
from e2e.bench import cri_ops
from e2e.bench.cri_ops import Target
from e2e.bench.records import Results

STATS_CALLS = (("container_stats", "ListContainerStats"), ("pod_stats", "ListPodSandboxStats"))
_REQUESTS: dict[str, Any] = {
    "ListContainerStats": api_pb2.ListContainerStatsRequest,
    "ListPodSandboxStats": api_pb2.ListPodSandboxStatsRequest,
}


def call_stats(target: Target, results: Results) -> None:
    """Each stats RPC once (skipping one already found unimplemented), recording the latency."""
    for key, rpc in STATS_CALLS:
        figure = f"density.{key}"
        if results.data[figure][target.name].status:
            continue
        method = getattr(target.rt, rpc)
        request = _REQUESTS[rpc]()
        try:
            ms, _ = cri_ops.timed(partial(method, request, timeout=cri_ops.CALL_TIMEOUT))
        except Exception as exc:
            if cri_ops.is_unimplemented(exc):
                results.set_status(figure, target.name, "unimplemented")
            else:
                results.error(figure, target.name, cri_ops.describe(exc))
            continue
        results.add(figure, target.name, ms)
