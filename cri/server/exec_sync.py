"""ExecSync: run a command in a running container and return its output (the probe path)."""

from __future__ import annotations

from cri import containers, errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
    record = containers.running(rt, request.container_id)
    if not request.cmd:
        raise errors.InvalidArgument(f"ExecSync in container {record.id}: cmd is empty")
    task = await rt.shims.get(record.id)
    timeout = float(request.timeout) if request.timeout > 0 else None
    result = await task.exec_sync(list(request.cmd), timeout=timeout)
    if result.timed_out:
        raise errors.DeadlineExceeded(
            f"command {list(request.cmd)} in container {record.id} timed out after "
            f"{request.timeout}s"
        )
    return api_pb2.ExecSyncResponse(
        stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
    )
