"""The shim's request server on `shim.sock` (asyncio, one thread).

Each connection reads request frames and runs each request as its own asyncio
task, so a long `wait` never holds up a `kill` on the same connection. If the
first request of a connection is `exec_stream` or `attach`, the connection
becomes a stream connection (shim.streams) after the OK response. A
malformed frame closes its connection only. When a client leaves, its
pending queries (`wait`, `state`, `info`) are cancelled; actions run to the end.

After a successful `delete` the response is flushed and the server stops;
shim.daemon then removes the socket and pid file and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from shim import api, errors, protocol, streams

VERSION = 1

Ready = Callable[[], Awaitable[None]]


class Service(Protocol):
    """What the server serves: shim.task.Task (or a fake in unit tests)."""

    id: str
    # Set once the task is deleted: the server then stops after replying.
    deleted: bool

    async def create(self, p: api.CreateParams) -> api.TaskState: ...
    async def start(self) -> api.TaskState: ...
    async def state(self) -> api.TaskState: ...
    async def kill(self, signal: int, all: bool = False) -> None: ...
    async def wait(self, timeout: float | None = None) -> api.TaskState: ...  # noqa: ASYNC109
    async def delete(self) -> api.TaskState: ...
    async def exec_sync(self, p: api.ExecSyncParams) -> api.ExecSyncResult: ...
    async def reopen_log(self) -> None: ...
    async def update(self, resources: dict[str, Any]) -> None: ...
    async def exec_stream(
        self, p: api.ExecStreamParams, conn: streams.StreamConn, ready: Ready
    ) -> None: ...
    async def attach(self, p: api.AttachParams, conn: streams.StreamConn, ready: Ready) -> None: ...
    async def close(self) -> None: ...


Handler = Callable[[Service, Any], Awaitable[Any]]


async def _info(t: Service, _: None) -> api.ShimInfo:
    return api.ShimInfo(id=t.id, pid=os.getpid(), version=VERSION)


# method -> (params record or None, handler)
METHODS: dict[str, tuple[type[Any] | None, Handler]] = {
    "info": (None, _info),
    "create": (api.CreateParams, lambda t, p: t.create(p)),
    "start": (None, lambda t, _: t.start()),
    "state": (None, lambda t, _: t.state()),
    "kill": (api.KillParams, lambda t, p: t.kill(p.signal, p.all)),
    "wait": (api.WaitParams, lambda t, p: t.wait(p.timeout)),
    "delete": (None, lambda t, _: t.delete()),
    "exec_sync": (api.ExecSyncParams, lambda t, p: t.exec_sync(p)),
    "reopen_log": (None, lambda t, _: t.reopen_log()),
    "update": (api.UpdateParams, lambda t, p: t.update(p.resources)),
}
STREAM_METHODS: dict[str, type[Any]] = {
    "exec_stream": api.ExecStreamParams,
    "attach": api.AttachParams,
}
_QUERIES = frozenset({"info", "state", "wait"})


def _result(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return api.to_wire(value)
    return value


class Server:
    def __init__(self, t: Service) -> None:
        self.task = t
        self._stop = asyncio.Event()

    async def serve(self, sock: socket.socket) -> None:
        """Serve on the listening socket until the task is deleted."""
        server = await asyncio.start_unix_server(self._connection, sock=sock)
        async with server:
            await self._stop.wait()
        await self.task.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: dict[asyncio.Task[None], str] = {}
        try:
            await self._requests(reader, writer, pending)
        except (protocol.ProtocolError, ConnectionError):
            pass
        finally:
            for t, method in pending.items():
                if method in _QUERIES:
                    t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pending: dict[asyncio.Task[None], str],
    ) -> None:
        first = True
        while (msg := await protocol.read_message(reader, protocol.MAX_REQUEST)) is not None:
            method = str(msg.get("method"))
            if first and method in STREAM_METHODS:
                await self._stream(msg, reader, writer)
                return
            first = False
            t = asyncio.get_running_loop().create_task(self._request(msg, writer))
            pending[t] = method
            t.add_done_callback(lambda done: pending.pop(done, None))

    async def _request(self, msg: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        rid = msg.get("id")
        try:
            result = await self._call(str(msg.get("method")), msg.get("params") or {})
            reply = protocol.response(rid, _result(result))
        except Exception as e:
            _report(e)
            reply = protocol.error_response(rid, e)
        if writer.is_closing():
            return
        writer.write(protocol.encode(reply))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if self.task.deleted:
            self._stop.set()

    async def _call(self, method: str, params: object) -> object:
        if method not in METHODS:
            raise errors.InvalidArgument(f"shim {self.task.id}: unknown method {method!r}")
        record, handler = METHODS[method]
        return await handler(self.task, None if record is None else api.from_wire(record, params))

    async def _stream(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        rid, method = msg.get("id"), str(msg.get("method"))
        conn = streams.StreamConn(reader, writer)
        responded = False

        async def ready() -> None:
            nonlocal responded
            responded = True
            writer.write(protocol.encode(protocol.response(rid, None)))
            await writer.drain()

        try:
            params = api.from_wire(STREAM_METHODS[method], msg.get("params") or {})
            if method == "attach":
                await self.task.attach(params, conn, ready)
            else:
                await self.task.exec_stream(params, conn, ready)
        except Exception as e:
            _report(e)
            if not responded and not conn.closed:
                writer.write(protocol.encode(protocol.error_response(rid, e)))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        finally:
            await conn.close()


def _report(exc: BaseException) -> None:
    """Unexpected exceptions go to the shim's stderr (shim.log) with a traceback."""
    if not isinstance(exc, errors.Error | ConnectionError):
        traceback.print_exception(exc, file=sys.stderr)
