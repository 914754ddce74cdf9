"""The typed client against a real keeper process, with fake jobs behind it (fake_keeper).

No runtime, no root: the keeper's protocol, its one-at-a-time actions, waits, the exit of its
"init" (a `cat`), attach feeds and streams handed to workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim import api, client, errors, protocol, state

ROOT = Path(__file__).resolve().parents[3]


class Keeper:
    def __init__(self, proc: subprocess.Popen[bytes], state_dir: Path) -> None:
        self.proc, self.state_dir = proc, state_dir


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[Keeper]:
    log = (tmp_path / "keeper.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.shim.fake_keeper", str(tmp_path)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / state.PID).exists():
        assert proc.poll() is None, (tmp_path / "keeper.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield Keeper(proc, tmp_path)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log.close()


async def created(k: Keeper, **kw: object) -> client.ShimClient:
    c = await client.connect(k.state_dir)
    await c.create(api.CreateParams(bundle="/b", runtime_root="/r", **kw))  # type: ignore[arg-type]
    return c


async def test_typed_calls_and_errors(keeper: Keeper) -> None:
    c = await client.connect(keeper.state_dir)
    assert (c.id, c.pid) == ("fake1", keeper.proc.pid)
    with pytest.raises(errors.NotFound, match="fake1"):
        await c.state()
    with pytest.raises(errors.FailedPrecondition, match="on purpose"):
        await c.create(api.CreateParams(bundle="/fail", runtime_root="/r"))
    p = api.CreateParams(bundle="/b", runtime_root="/r")
    assert (await c.create(p)).status == api.CREATED
    with pytest.raises(errors.AlreadyExists):
        await c.create(p)
    with pytest.raises(errors.FailedPrecondition, match="created"):
        await c.exec_sync(["true"])
    assert (await c.start()).status == api.RUNNING
    r = await c.exec_sync(["echo", "hi"], timeout=1)
    assert (r.stdout, r.stderr, r.exit_code) == (b"echo hi", b"\xff", 1)
    await c.update({"memory": {"limit": 1}})
    assert json.loads((keeper.state_dir / "update.json").read_text()) == {"memory": {"limit": 1}}
    with pytest.raises(errors.InvalidArgument, match=r"UpdateParams\.resources"):
        await c.call("update", {"resources": 5})  # decoded by the update worker
    with pytest.raises(errors.FailedPrecondition, match="no log file"):
        await c.reopen_log()
    with pytest.raises(errors.InvalidArgument):
        await c.call("no_such_method")
    with pytest.raises(errors.InvalidArgument):
        await c.call("kill", {"signal": "nine"})
    await c.close()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("bundle", 5, r"CreateParams\.bundle"),  # decoded only by the create worker
        ("rootfs_mounts", [{"type": "bind"}], "Mount.*source"),
        ("log_path", 7, r"CreateParams\.log_path"),  # read by the keeper itself
        ("tty", "yes", r"CreateParams\.tty"),
        ("stdin_once", 1, r"CreateParams\.stdin_once"),
    ],
)
async def test_a_malformed_create_is_refused_and_changes_nothing(
    keeper: Keeper, field: str, value: object, says: str
) -> None:
    """The keeper keeps a create request as it came and its workers decode it: a bad field
    is still InvalidArgument, the log file is not made, and a good create works after it."""
    log = keeper.state_dir / "c.log"
    good = api.to_wire(api.CreateParams(bundle="/b", runtime_root="/r", log_path=str(log)))
    c = await client.connect(keeper.state_dir)
    with pytest.raises(errors.InvalidArgument, match=says):
        await c.call("create", {**good, field: value})
    assert not log.exists()
    with pytest.raises(errors.NotFound):
        await c.state()
    created = api.from_wire(api.TaskState, await c.call("create", good))
    assert (created.status, created.exit_code, created.reason) == (api.CREATED, 0, "")
    assert log.exists()
    await c.close()


async def test_a_malformed_wait_is_refused(keeper: Keeper) -> None:
    c = await created(keeper)
    for timeout in ("soon", True, [1]):
        with pytest.raises(errors.InvalidArgument, match=r"WaitParams\.timeout"):
            await c.call("wait", {"timeout": timeout})
    with pytest.raises(errors.DeadlineExceeded):
        await c.wait(timeout=0)
    await c.close()


async def test_a_result_is_answered_while_the_workers_descriptors_live_on(
    keeper: Keeper,
) -> None:
    """The keeper answers when the worker's result frame is whole, not at the end of its
    pipe: that comes only when every copy of the write end has closed (the worker's exit,
    or here a process it forked that keeps them)."""
    c = await created(keeper)
    await c.update({"linger": 60})
    holder = int((keeper.state_dir / "holder.pid").read_text())
    try:
        os.kill(holder, 0)  # ProcessLookupError: answered only after the holder had gone
        assert (await c.state()).status == api.CREATED  # and the keeper still serves
    finally:
        os.kill(holder, signal.SIGKILL)
    await c.close()


async def test_wait_does_not_block_other_calls_and_sees_the_exit(keeper: Keeper) -> None:
    c = await created(keeper)
    await c.start()
    waiting = asyncio.ensure_future(c.wait())
    with pytest.raises(errors.DeadlineExceeded):
        await c.wait(timeout=0.05)
    assert (await c.state()).status == api.RUNNING
    await c.kill(signal.SIGKILL)
    final = await waiting
    assert (final.status, final.exit_code) == (api.STOPPED, 137)
    assert (keeper.state_dir / state.EXIT).exists()  # on disk before wait returned
    await c.kill(signal.SIGKILL)  # idempotent once reaped
    await c.close()


async def test_delete_kills_waits_and_ends_the_keeper(keeper: Keeper) -> None:
    c = await created(keeper)
    await c.start()
    assert (await c.delete()).exit_code == 137
    assert await asyncio.to_thread(keeper.proc.wait, 10) == 0


async def test_disconnect_drops_pending_waits_only(keeper: Keeper) -> None:
    c = await created(keeper)
    waiting = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0.05)
    await c.close()
    with pytest.raises(errors.Unavailable):
        await waiting
    other = await client.connect(keeper.state_dir)
    assert (await other.state()).status == api.CREATED
    await other.close()


async def test_lost_keeper_fails_pending_calls(keeper: Keeper) -> None:
    c = await created(keeper)
    waiting = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0.05)
    keeper.proc.kill()
    with pytest.raises(errors.Unavailable):
        await waiting
    with pytest.raises(errors.Unavailable):
        await c.state()
    await c.close()


async def test_malformed_frame_closes_only_its_connection(keeper: Keeper) -> None:
    good = await client.connect(keeper.state_dir)
    reader, writer = await asyncio.open_unix_connection(str(keeper.state_dir / state.SOCKET))
    writer.write(b"\x00\x00\x00\x03{x}")
    assert await reader.read() == b""
    writer.close()
    reader, writer = await asyncio.open_unix_connection(str(keeper.state_dir / state.SOCKET))
    writer.write(b"\xff\xff\xff\xff")  # longer than any request may be
    assert await reader.read() == b""
    writer.close()
    assert (await good.info()).id == "fake1"
    await good.close()


async def test_stream_round_trip_in_a_worker(keeper: Keeper) -> None:
    c = await created(keeper)
    await c.start()
    s = await c.exec_stream(api.ExecStreamParams(args=("a", "b", "c"), stdin=True))
    await s.write_stdin(b"hello")
    await s.resize(80, 24)
    assert await s.read() == (api.CH_STDOUT, b"HELLO")
    assert await s.read() == (api.CH_STDERR, b"80x24")
    await s.close_stdin()
    assert await s.wait_exit() == 3
    assert await s.read() is None
    await s.close()
    assert (await c.state()).status == api.RUNNING
    await c.close()


async def test_attach_feed_and_stdin_once(keeper: Keeper) -> None:
    c = await created(keeper, stdin=True, stdin_once=True)
    await c.start()
    a1 = await c.attach(api.AttachParams(stdin=True))
    a2 = await c.attach(api.AttachParams(stdin=False))
    await a1.write_stdin(b"one\n")
    assert await a1.read() == (api.CH_STDOUT, b"one\n")
    assert await a2.read() == (api.CH_STDOUT, b"one\n")
    await a1.close_stdin()  # stdin_once: cat sees end of file and exits 0
    assert await a1.wait_exit() == 0
    assert await a2.wait_exit() == 0
    assert (await c.wait(5)).exit_code == 0
    for a in (a1, a2):
        await a.close()
    with pytest.raises(errors.FailedPrecondition, match="stopped"):
        await c.attach(api.AttachParams())
    await c.close()


async def test_connect_refuses_a_foreign_pid(keeper: Keeper) -> None:
    (keeper.state_dir / state.PID).write_text("1\n")
    with pytest.raises(errors.Unavailable, match="answers"):
        await client.connect(keeper.state_dir)


async def test_raw_protocol_ids_are_echoed(keeper: Keeper) -> None:
    reader, writer = await asyncio.open_unix_connection(str(keeper.state_dir / state.SOCKET))
    writer.write(protocol.encode({"id": "abc", "method": "info"}))
    writer.write(protocol.encode({"id": [1], "method": "state"}))
    first = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    second = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    assert first is not None and first["id"] == "abc" and first["result"]["id"] == "fake1"
    assert second is not None and second["id"] == [1] and second["error"]["kind"] == "not_found"
    writer.close()
