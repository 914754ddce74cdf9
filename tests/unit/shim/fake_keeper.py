"""A real shim.keeper.Keeper with fake jobs, run as its own process by the unit tests.

`python -m tests.unit.shim.fake_keeper DIR` listens on DIR/shim.sock and writes
DIR/shim.pid once it does. Jobs need no runtime: `create` starts `cat` (its
stdio the container's; `sleep` without stdin) as the "init", which the keeper
adopts when the worker exits, as it would a runc init; `update` writes
DIR/update.json (with "linger": N, a process it forks holds the worker's
descriptors N seconds more); `exec_stream` echoes stdin upper-cased and
reports resizes on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from shim import api, attach, daemon, errors, keeper, procs, rehearsal, runtime, state, workers


class FakeJobs(rehearsal.NoRuntimeJobs):
    """The rehearsal's jobs (undo_create, start, kill_all, teardown do nothing), with a
    "cat" or "sleep" init, a create that fails on request, and echoing execs."""

    async def create(
        self,
        id: str,
        state_dir: str,
        p: api.CreateParams,
        stdio: runtime.Stdio,
        console: str | None,
    ) -> dict[str, Any]:
        if p.bundle == "/fail":
            raise errors.FailedPrecondition("create failed on purpose")
        argv = ["cat"] if stdio.stdin is not None else ["sleep", "1000"]
        pid = procs.spawn(argv, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
        return {"pid": pid, "rootfs": "", "cgroup": None}

    async def update(
        self, id: str, state_dir: str, p: api.CreateParams, resources: dict[str, Any]
    ) -> None:
        if "linger" in resources:
            _leave_a_holder(state_dir, float(resources["linger"]))
        state.write_atomic(f"{state_dir}/update.json", json.dumps(resources).encode())

    async def exec_sync(
        self, id: str, state_dir: str, p: api.CreateParams, params: api.ExecSyncParams
    ) -> dict[str, Any]:
        out = " ".join(params.args).encode()
        return api.to_wire(api.ExecSyncResult(stdout=out, stderr=b"\xff", exit_code=1))

    async def exec_stream(
        self,
        id: str,
        state_dir: str,
        p: api.CreateParams,
        fd: int,
        leftover: bytes,
        rid: object,
        params: api.ExecStreamParams,
    ) -> None:
        conn, writer = await workers.open_stream(fd, leftover)
        await workers.answer_ok(writer, rid)
        done = asyncio.Event()

        async def echo(data: bytes) -> None:
            await conn.send_wait(api.CH_STDOUT, data.upper())

        def resize(w: int, h: int) -> None:
            conn.send(api.CH_STDERR, f"{w}x{h}".encode())

        reading = asyncio.ensure_future(conn.input(echo, done.set, resize))
        await done.wait()
        await conn.finish(len(params.args))
        reading.cancel()

    async def attach_stream(
        self,
        fd: int,
        leftover: bytes,
        rid: object,
        params: api.AttachParams,
        ends: attach.Ends,
    ) -> None:
        await workers.attach_stream(fd, leftover, rid, params, ends)


def _leave_a_holder(state_dir: str, seconds: float) -> None:
    """Fork a process that keeps every descriptor of this worker (its result pipe too)
    open for `seconds` after the worker has answered; its pid in STATE_DIR/holder.pid."""
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(0)
    state.write_atomic(f"{state_dir}/holder.pid", f"{pid}\n".encode(), durable=False)


def main(state_dir: Path) -> None:
    daemon.prctl(daemon.PR_SET_CHILD_SUBREAPER, 1)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(state_dir / state.SOCKET))
    sock.listen()
    state.write_atomic(state_dir / state.PID, f"{os.getpid()}\n".encode(), durable=False)
    keeper.Keeper("fake1", str(state_dir), sock, jobs=FakeJobs()).run()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
