"""The typed asyncio client berthd uses to talk to one shim.

`connect(state_dir)` (re)attaches to a live shim: the pid in shim.pid must be
alive and the shim on shim.sock must report that same pid. One connection
carries any number of concurrent calls (responses matched by id, read by one
reader task that the client owns and cancels in `close`). A lost connection
fails every pending call with Unavailable; the shim itself keeps running.

Streams (`exec_stream`, `attach`) each get their own connection: see
`ShimStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shim import api, errors, exitfile, protocol, state

CONNECT_TIMEOUT = 5.0
# Seconds a shim gets to answer, by method: generous (it may be running runc on a loaded
# node) but bounded. wait and exec_sync get their own timeout plus ANSWER_SLACK.
DEFAULT_DEADLINE = 10.0
DEADLINES: dict[str, float] = {"create": 180.0, "delete": 180.0, "update": 60.0}
ANSWER_SLACK = 5.0
EXIT_TIMEOUT = 5.0


async def _open(state_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        with state.socket_path(state_dir / state.SOCKET) as name:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                return await asyncio.open_unix_connection(name)
    except (OSError, TimeoutError) as e:
        raise errors.Unavailable(f"shim in {state_dir}: cannot connect: {e}") from None


async def connect(state_dir: Path) -> ShimClient:
    """A client for the live shim of `state_dir`.

    NotFound if there is no shim.pid; Unavailable if that process is gone or
    the socket does not answer as that process.
    """
    pid = state.read_pid(state_dir)
    if pid is None:
        raise errors.NotFound(f"no shim in {state_dir}")
    if not state.pid_alive(pid):
        raise errors.Unavailable(f"shim in {state_dir} (pid {pid}) is not running")
    reader, writer = await _open(state_dir)
    client = ShimClient(state_dir=state_dir, reader=reader, writer=writer)
    try:
        info = await client.info()
    except BaseException:
        await client.close()
        raise
    if info.pid != pid:
        await client.close()
        raise errors.Unavailable(f"shim in {state_dir}: pid {info.pid} answers, not {pid}")
    client.id, client.pid = info.id, info.pid
    return client


async def wait_process_gone(pid: int, seconds: float) -> bool:
    """Wait until process `pid` (need not be our child) has exited; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, ready)
    try:
        async with asyncio.timeout(seconds):
            await gone
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class ShimClient:
    """Calls to one shim. Implements `shim.api.TaskAPI` plus streams and `info`."""

    def __init__(
        self, *, state_dir: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.state_dir = state_dir
        self.id = ""
        self.pid = 0
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._lost: errors.Error | None = None
        self._reading = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while (
                msg := await protocol.read_message(self._reader, protocol.MAX_RESPONSE)
            ) is not None:
                fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    fut.set_exception(protocol.error_from_wire(msg["error"]))
                else:
                    fut.set_result(msg.get("result"))
            reason = "connection closed"
        except (protocol.ProtocolError, ConnectionError) as e:
            reason = str(e)
        self._lose(errors.Unavailable(f"shim {self.id or self.state_dir}: {reason}"))

    def _lose(self, exc: errors.Error) -> None:
        self._lost = exc
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    @property
    def connected(self) -> bool:
        """False once the connection to the shim is gone (the shim exited or crashed)."""
        return self._lost is None

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = -1.0,
    ) -> Any:
        """One raw request; the result as decoded JSON.

        A shim that does not answer within ``deadline`` seconds (default: per method, see
        ``DEADLINES``; None waits for ever) raises DeadlineExceeded naming the shim, so one
        stuck shim never holds a caller of berthd.
        """
        if self._lost is not None:
            raise self._lost
        if deadline is not None and deadline < 0:
            deadline = DEADLINES.get(method, DEFAULT_DEADLINE)
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        message = {"id": rid, "method": method, "params": dict(params or {})}
        try:
            async with asyncio.timeout(deadline):
                self._writer.write(protocol.encode(message))
                await self._writer.drain()
                return await fut
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"shim {self.id or self.state_dir}: no answer to {method} in {deadline:.0f}s"
            ) from None
        except ConnectionError as e:
            raise errors.Unavailable(f"shim {self.id}: {e}") from None
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        """Close the connection; calls still pending fail with Unavailable."""
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        if self._lost is None:
            self._lose(errors.Unavailable(f"shim {self.id}: client closed"))
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    # -- typed calls ----------------------------------------------------------

    async def info(self) -> api.ShimInfo:
        return api.from_wire(api.ShimInfo, await self.call("info"))

    async def create(self, params: api.CreateParams) -> api.TaskState:
        return await self._state_call("create", api.to_wire(params))

    async def start(self) -> api.TaskState:
        return await self._state_call("start")

    async def state(self) -> api.TaskState:
        return await self._state_call("state")

    async def kill(self, signal: int, all: bool = False) -> None:
        await self.call("kill", {"signal": int(signal), "all": all})

    async def wait(self, timeout: float | None = None) -> api.TaskState:  # noqa: ASYNC109
        deadline = None if timeout is None else timeout + ANSWER_SLACK
        result = await self.call("wait", {"timeout": timeout}, deadline=deadline)
        return api.from_wire(api.TaskState, result)

    async def delete(self) -> api.TaskState:
        """Delete the task and wait (bounded) until the shim process has exited.

        A shim already gone yields its exit.json.
        """
        try:
            result = await self._state_call("delete")
        except errors.Unavailable:
            recorded = exitfile.read(self.state_dir)
            pid = state.read_pid(self.state_dir)
            if recorded is None or (pid is not None and state.pid_alive(pid)):
                raise
            result = exitfile.to_task_state(self.id, recorded)
        await self.close()
        if self.pid:
            await wait_process_gone(self.pid, EXIT_TIMEOUT)
        return result

    async def exec_sync(
        self,
        args: Sequence[str],
        *,
        env: Sequence[str] = (),
        cwd: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 (enforced by the shim)
        max_output: int = api.MAX_EXEC_OUTPUT,
    ) -> api.ExecSyncResult:
        params = api.ExecSyncParams(
            args=tuple(args), env=tuple(env), cwd=cwd, timeout=timeout, max_output=max_output
        )
        deadline = None if not timeout or timeout <= 0 else timeout + ANSWER_SLACK
        result = await self.call("exec_sync", api.to_wire(params), deadline=deadline)
        return api.from_wire(api.ExecSyncResult, result)

    async def reopen_log(self) -> None:
        await self.call("reopen_log")

    async def update(self, resources: Mapping[str, Any]) -> None:
        await self.call("update", {"resources": dict(resources)})

    async def _state_call(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> api.TaskState:
        return api.from_wire(api.TaskState, await self.call(method, params))

    # -- streams --------------------------------------------------------------

    async def open_stream(self, method: str, params: Mapping[str, Any]) -> ShimStream:
        """Open a stream connection (`exec_stream` or `attach`); errors as for calls."""
        reader, writer = await _open(self.state_dir)
        try:
            writer.write(protocol.encode({"id": 1, "method": method, "params": dict(params)}))
            await writer.drain()
            reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
        except (ConnectionError, protocol.ProtocolError) as e:
            writer.close()
            raise errors.Unavailable(f"shim {self.id}: {method}: {e}") from None
        if reply is None or "error" in reply:
            writer.close()
            if reply is None:
                raise errors.Unavailable(f"shim {self.id}: {method}: connection closed")
            raise protocol.error_from_wire(reply["error"])
        return ShimStream(reader, writer)

    async def exec_stream(self, params: api.ExecStreamParams) -> ShimStream:
        return await self.open_stream("exec_stream", api.to_wire(params))

    async def attach(self, params: api.AttachParams) -> ShimStream:
        return await self.open_stream("attach", api.to_wire(params))


class ShimStream:
    """The client's end of an exec or attach stream.

    `read()` yields (channel, data) for stdout (1) and stderr (2) until the
    shim sends the exit frame; then it returns None and `wait_exit()` has the
    code. Closing the stream early makes the shim kill an exec'd process.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._exit_code: int | None = None
        self._ended = False

    async def _send(self, channel: int, payload: bytes) -> None:
        try:
            self._writer.write(protocol.encode_stream(channel, payload))
            await self._writer.drain()
        except ConnectionError as e:
            raise errors.Unavailable(f"stream closed: {e}") from None

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(view), protocol.MAX_STREAM_PAYLOAD):
            await self._send(api.CH_STDIN, bytes(view[i : i + protocol.MAX_STREAM_PAYLOAD]))

    async def close_stdin(self) -> None:
        await self._send(api.CH_STDIN_CLOSE, b"")

    async def resize(self, width: int, height: int) -> None:
        await self._send(api.CH_RESIZE, json.dumps({"width": width, "height": height}).encode())

    async def read(self) -> tuple[int, bytes] | None:
        while not self._ended:
            try:
                frame = await protocol.read_stream(self._reader)
            except (protocol.ProtocolError, ConnectionError):
                frame = None
            if frame is None:
                self._ended = True
                return None
            channel, payload = frame
            if channel == api.CH_EXIT:
                self._exit_code = int(json.loads(payload)["exit_code"])
                self._ended = True
                return None
            return channel, payload
        return None

    async def wait_exit(self) -> int:
        """Discard remaining output and return the exit code (Unavailable if none came)."""
        while await self.read() is not None:
            pass
        if self._exit_code is None:
            raise errors.Unavailable("stream ended without an exit status")
        return self._exit_code

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
