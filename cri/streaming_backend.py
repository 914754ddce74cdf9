"""The streaming server's backend: exec and attach through the container's shim, and
port-forward connections dialled inside the pod's network namespace."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from cri import containers, errors, netns
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from cri.streaming.api import ProcessStream
from shim import api as shim_api
from shim.client import ShimClient

CONNECT_TIMEOUT = 10.0


class ShimBackend:
    """Implements :class:`cri.streaming.api.StreamingBackend` for berthd."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def exec(self, req: api_pb2.ExecRequest) -> ProcessStream:
        task = await self._running_task(req.container_id)
        return await task.exec_stream(
            shim_api.ExecStreamParams(
                args=tuple(req.cmd),
                tty=req.tty,
                stdin=req.stdin,
                stdout=req.stdout,
                stderr=req.stderr,
            )
        )

    async def attach(self, req: api_pb2.AttachRequest) -> ProcessStream:
        task = await self._running_task(req.container_id)
        return await task.attach(
            shim_api.AttachParams(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr)
        )

    async def port_forward(
        self, pod_sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sandbox = self._rt.store.sandbox(pod_sandbox_id)
        if sandbox.state != api_pb2.SANDBOX_READY:
            raise errors.FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        pin = sandbox.namespaces.get("net")
        sock = await asyncio.to_thread(_dial, Path(pin) if pin else None, port)
        return await asyncio.open_connection(sock=sock)

    async def _running_task(self, container_id: str) -> ShimClient:
        return await self._rt.shims.get(containers.running(self._rt, container_id).id)


def _dial(net_pin: Path | None, port: int) -> socket.socket:
    """Connect to localhost:port inside the pod's netns (the host's for hostNetwork pods).

    A socket keeps the namespace it was created in, so only its creation and connect run in
    the namespace; it is then used from the event loop like any other.
    """

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    return connect() if net_pin is None else netns.run_in_netns(net_pin, connect)
