"""The typed client against the real request server, with a fake task behind it.

No processes: the server runs in this event loop on a socket in tmp_path.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shim import api, client, errors, protocol, server, state, streams


class FakeTask:
    """Behaves like shim.task.Task for the server, in memory."""

    def __init__(self) -> None:
        self.id = "fake1"
        self.deleted = False
        self.status = ""
        self.exited = asyncio.Event()
        self.wait_cancelled = asyncio.Event()
        self.updates: list[dict[str, Any]] = []

    def _state(self) -> api.TaskState:
        if not self.status:
            raise errors.NotFound(f"container {self.id} has no task")
        return api.TaskState(
            id=self.id, status=self.status, exit_code=9 if self.exited.is_set() else 0
        )

    async def create(self, p: api.CreateParams) -> api.TaskState:
        self.status = api.CREATED
        return self._state()

    async def start(self) -> api.TaskState:
        self.status = api.RUNNING
        return self._state()

    async def state(self) -> api.TaskState:
        return self._state()

    async def kill(self, signal: int, all: bool = False) -> None:
        self._state()
        self.status = api.STOPPED
        self.exited.set()

    async def wait(self, timeout: float | None = None) -> api.TaskState:  # noqa: ASYNC109
        try:
            await self.exited.wait()
        except asyncio.CancelledError:
            self.wait_cancelled.set()
            raise
        return self._state()

    async def delete(self) -> api.TaskState:
        self.deleted = True
        return api.TaskState(id=self.id, status=api.STOPPED)

    async def exec_sync(self, p: api.ExecSyncParams) -> api.ExecSyncResult:
        return api.ExecSyncResult(stdout=" ".join(p.args).encode(), stderr=b"\xff", exit_code=1)

    async def reopen_log(self) -> None:
        raise errors.FailedPrecondition(f"container {self.id} is stopped")

    async def update(self, resources: dict[str, Any]) -> None:
        self.updates.append(resources)

    async def exec_stream(
        self, p: api.ExecStreamParams, conn: streams.StreamConn, ready: server.Ready
    ) -> None:
        await ready()
        done = asyncio.Event()

        async def echo(data: bytes) -> None:
            await conn.send_wait(api.CH_STDOUT, data.upper())

        def resize(w: int, h: int) -> None:
            conn.send(api.CH_STDERR, f"{w}x{h}".encode())

        reading = asyncio.ensure_future(conn.input(echo, done.set, resize))
        await done.wait()
        await conn.finish(len(p.args))
        reading.cancel()

    async def attach(
        self, p: api.AttachParams, conn: streams.StreamConn, ready: server.Ready
    ) -> None:
        raise errors.FailedPrecondition("no attach here")

    async def close(self) -> None:
        pass


class Running:
    def __init__(self, task: FakeTask, srv: asyncio.Task[None], state_dir: Path) -> None:
        self.task, self.srv, self.state_dir = task, srv, state_dir


@pytest.fixture
async def shim(tmp_path: Path) -> AsyncIterator[Running]:
    fake = FakeTask()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / state.SOCKET))
    sock.listen()
    sock.setblocking(False)
    (tmp_path / state.PID).write_text(f"{os.getpid()}\n")
    srv = asyncio.ensure_future(server.Server(fake).serve(sock))
    yield Running(fake, srv, tmp_path)
    srv.cancel()
    await asyncio.gather(srv, return_exceptions=True)


async def test_typed_calls_and_errors(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    assert (c.id, c.pid) == ("fake1", os.getpid())
    with pytest.raises(errors.NotFound, match="fake1"):
        await c.state()
    p = api.CreateParams(bundle="/b", runtime_root="/r")
    assert (await c.create(p)).status == api.CREATED
    assert (await c.start()).status == api.RUNNING
    r = await c.exec_sync(["echo", "hi"], timeout=1)
    assert (r.stdout, r.stderr, r.exit_code) == (b"echo hi", b"\xff", 1)
    await c.update({"memory": {"limit": 1}})
    assert shim.task.updates == [{"memory": {"limit": 1}}]
    with pytest.raises(errors.FailedPrecondition):
        await c.reopen_log()
    with pytest.raises(errors.InvalidArgument):
        await c.call("no_such_method")
    with pytest.raises(errors.InvalidArgument):
        await c.call("kill", {"signal": "nine"})
    await c.close()


async def test_wait_does_not_block_other_calls_on_the_connection(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    await c.create(api.CreateParams(bundle="/b", runtime_root="/r"))
    waiting = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0)
    assert (await c.state()).status == api.CREATED
    await c.kill(9)
    assert (await waiting).exit_code == 9
    await c.close()


async def test_delete_stops_the_server(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    c.pid = 0  # the "shim" is this very process: don't wait for it to exit
    assert (await c.delete()).status == api.STOPPED
    async with asyncio.timeout(5):
        await shim.srv


async def test_disconnect_cancels_pending_waits(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    await c.create(api.CreateParams(bundle="/b", runtime_root="/r"))
    waiting = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0.01)
    await c.close()
    with pytest.raises(errors.Unavailable):
        await waiting
    async with asyncio.timeout(5):
        await shim.task.wait_cancelled.wait()


async def test_lost_shim_fails_pending_calls(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    await c.create(api.CreateParams(bundle="/b", runtime_root="/r"))
    waiting = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0.01)
    shim.srv.cancel()
    await asyncio.gather(shim.srv, return_exceptions=True)
    c._writer.transport.abort()  # what the shim's death looks like to us
    with pytest.raises(errors.Unavailable):
        await waiting
    with pytest.raises(errors.Unavailable):
        await c.state()
    await c.close()


async def test_malformed_frame_closes_only_its_connection(shim: Running) -> None:
    good = await client.connect(shim.state_dir)
    reader, writer = await asyncio.open_unix_connection(str(shim.state_dir / state.SOCKET))
    writer.write(b"\x00\x00\x00\x03{x}")
    assert await reader.read() == b""
    writer.close()
    assert (await good.info()).id == "fake1"
    await good.close()


async def test_stream_round_trip(shim: Running) -> None:
    c = await client.connect(shim.state_dir)
    s = await c.exec_stream(api.ExecStreamParams(args=("a", "b", "c"), stdin=True))
    await s.write_stdin(b"hello")
    await s.resize(80, 24)
    assert await s.read() == (api.CH_STDOUT, b"HELLO")
    assert await s.read() == (api.CH_STDERR, b"80x24")
    await s.close_stdin()
    assert await s.wait_exit() == 3
    assert await s.read() is None
    await s.close()
    with pytest.raises(errors.FailedPrecondition, match="no attach"):
        await c.attach(api.AttachParams())
    await c.close()


async def test_connect_refuses_a_foreign_pid(shim: Running) -> None:
    (shim.state_dir / state.PID).write_text("1\n")
    with pytest.raises(errors.Unavailable, match="answers"):
        await client.connect(shim.state_dir)


async def test_raw_protocol_ids_are_echoed(shim: Running) -> None:
    reader, writer = await asyncio.open_unix_connection(str(shim.state_dir / state.SOCKET))
    writer.write(protocol.encode({"id": "abc", "method": "info"}))
    reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    assert reply is not None and reply["id"] == "abc" and reply["result"]["id"] == "fake1"
    writer.close()
