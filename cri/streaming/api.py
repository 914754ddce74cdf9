"""What the streaming server needs from the runtime: the backend contracts.

The streaming server speaks the wire protocols (SPDY, WebSocket) and the Kubernetes
remote-command and port-forward conventions; everything container-specific sits
behind these Protocols, which the daemon implements on top of the shims.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from cri.api.v1 import api_pb2

STDOUT = 1
STDERR = 2


class ProcessStream(Protocol):
    """An exec'd process or an attach session, as the shim exposes it.

    Methods may be called concurrently from different tasks (stdin, resize and
    output are pumped independently), but each method by one task at a time.
    """

    async def write_stdin(self, data: bytes) -> None:
        """Deliver bytes to the process's stdin.

        Raises an OSError (e.g. BrokenPipeError) once the process no longer reads
        stdin; the caller treats that as the end of stdin, not as a failure.
        """
        ...

    async def close_stdin(self) -> None:
        """Signal end of input. Idempotent; a no-op if stdin was not requested."""
        ...

    async def resize(self, width: int, height: int) -> None:
        """Set the terminal size (columns, rows). A no-op without a TTY."""
        ...

    async def read(self) -> tuple[int, bytes] | None:
        """Next output chunk as (STDOUT or STDERR, bytes); None once all output ended.

        After None, every further call returns None.
        """
        ...

    async def wait_exit(self) -> int:
        """Wait for the process to exit and return its exit code (128+n for signal n).

        For an attach session this is the container's exit code, or 0 when the
        session ends without the container exiting.
        """
        ...

    async def close(self) -> None:
        """Release everything; idempotent.

        Kills an exec'd process that is still running (so a client disconnect
        leaves no process behind); an attach session only detaches.
        """
        ...


class StreamingBackend(Protocol):
    """Starts exec/attach sessions and opens port-forward connections.

    The RPC handlers have already checked that the container or sandbox exists and
    runs before the URL was handed out; these calls may still fail if it stopped
    since. Failures are raised as `cri.errors.Error` subclasses (NotFound,
    FailedPrecondition, ...) or OSError; the server reports them to the client on
    the error stream and never crashes a connection it does not own.
    """

    async def exec(self, req: api_pb2.ExecRequest) -> ProcessStream:
        """Start `req.cmd` in the container with the stdio `req` asks for."""
        ...

    async def attach(self, req: api_pb2.AttachRequest) -> ProcessStream:
        """Attach to the container's main process stdio."""
        ...

    async def port_forward(
        self, pod_sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP connection to `port` inside the pod's network namespace."""
        ...
