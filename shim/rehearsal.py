"""The template's rehearsal: one keeper run through a container's life before any fork.

A forked shim owns every page it writes. Some of what a keeper writes the
first time round is not its own state but the interpreter's: the type
attribute cache and the names it holds, types' version tags, classes' shared
attribute keys, functions' warm-up counters and specialised bytecode. The
template runs a real `shim.keeper.Keeper` once, in its own process, against a
driver process speaking the real protocol and jobs that need no OCI runtime
(the "init" is a shell printing a line to each stream, then sleeping), so
that all of that is written once, in the template, and shared by every shim
it forks. Measured: 0.2 MiB less per shim with a running container (of 2.3);
run eight times (shim.template.REHEARSALS), so that the bytecode of what a
keeper runs once per container is specialised too, 0.1 MiB more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from shim import api, attach, client, daemon, errors, keeper, procs, runtime, state

SHIM_ID = "rehearsal"
INIT = ("/bin/sh", "-c", "echo out; echo err >&2; exec sleep 60")
TIMEOUT = 5.0


class NoRuntimeJobs:
    """keeper.Jobs without a runtime: `create` starts INIT with the container's stdio, the
    other actions do nothing (the keeper's unit tests build their fakes on this)."""

    async def create(
        self,
        id: str,
        state_dir: str,
        p: api.CreateParams,
        stdio: runtime.Stdio,
        console: str | None,
    ) -> dict[str, Any]:
        pid = procs.spawn(list(INIT), stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
        return {"pid": pid, "rootfs": "", "cgroup": None}

    async def undo_create(self, id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
        pass

    async def start(self, id: str, state_dir: str, p: api.CreateParams) -> None:
        pass

    async def kill_all(self, id: str, state_dir: str, p: api.CreateParams, sig: int) -> None:
        pass

    async def update(
        self, id: str, state_dir: str, p: api.CreateParams, resources: dict[str, Any]
    ) -> None:
        pass

    async def teardown(self, id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
        pass

    async def exec_sync(
        self, id: str, state_dir: str, p: api.CreateParams, params: api.ExecSyncParams
    ) -> dict[str, Any]:
        return api.to_wire(api.ExecSyncResult(stdout=b"", stderr=b"", exit_code=0))

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
        raise errors.FailedPrecondition("no exec streams in a rehearsal")

    async def attach_stream(
        self,
        fd: int,
        leftover: bytes,
        rid: object,
        params: api.AttachParams,
        ends: attach.Ends,
    ) -> None:
        raise errors.FailedPrecondition("no attachments in a rehearsal")


async def _drive(state_dir: Path, done: int) -> None:
    """The client side: berthd's calls over a container's life; "ok" on `done` at the end."""
    async with asyncio.timeout(TIMEOUT):
        shim = await client.connect(state_dir)
        try:
            await shim.info()
            log = str(state_dir / "log")
            # Shaped like berthd's: an overlay rootfs, a global runtime option.
            rootfs = api.Mount(type="overlay", source="overlay", options=("lowerdir=/",))
            await shim.create(
                api.CreateParams(
                    bundle="",
                    runtime_root="",
                    runtime_options=("--rehearsal",),
                    rootfs_mounts=(rootfs,),
                    log_path=log,
                )
            )
            await shim.state()
            await shim.start()
            for _ in range(3):
                await shim.state()
                await shim.exec_sync(["true"])
            with contextlib.suppress(errors.DeadlineExceeded):
                await shim.wait(timeout=0.001)
            await shim.reopen_log()
            await shim.kill(signal.SIGKILL)
            await shim.wait()
            await shim.state()
            await shim.call("delete")  # not shim.delete(): it waits for the "shim" to exit
        finally:
            await shim.close()
    os.write(done, b"ok")


class _Overran(BaseException):
    """The rehearsal took too long (a BaseException: the keeper's handlers catch Exception)."""


def _overran(*_: object) -> None:
    raise _Overran


def rehearse(state_dir: Path) -> bool:
    """Run the rehearsal in `state_dir` (then removed); True if it went all the way.

    It never fails the template: an error, or a rehearsal longer than TIMEOUT,
    is printed and only costs the shims the pages it would have saved them.
    """
    shutil.rmtree(state_dir, ignore_errors=True)  # left by a template that died rehearsing
    r, w = os.pipe2(os.O_CLOEXEC)
    listener: socket.SocketType | None = None
    previous = signal.signal(signal.SIGALRM, _overran)
    try:
        state_dir.mkdir(parents=True, mode=0o700)
        # The same listener a shim has (daemon.listen: a bare C-level socket).
        listener = socket.SocketType(fileno=daemon.listen(str(state_dir / state.SOCKET)))
        state.write_atomic(state_dir / state.PID, f"{os.getpid()}\n".encode(), durable=False)
        if daemon.raw_fork() == 0:
            try:
                os.close(r)
                asyncio.run(_drive(state_dir, w))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(0)
        os.close(w)
        w = -1
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT + 1)
        daemon.prctl(daemon.PR_SET_CHILD_SUBREAPER, 1)
        try:
            keeper.Keeper(SHIM_ID, str(state_dir), listener, jobs=NoRuntimeJobs()).run()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            daemon.prctl(daemon.PR_SET_CHILD_SUBREAPER, 0)
            # SIGCHLD keeps the keeper's handler: the shims inherit it (keeper._handle_sigchld).
            signal.set_wakeup_fd(-1)  # (the keeper did, unless it was interrupted)
        # The driver says "ok" once the delete it sent was answered (or exits without).
        went_through = bool(select.select((r,), (), (), TIMEOUT)[0]) and os.read(r, 2) == b"ok"
        went_through &= _reap_all(TIMEOUT)
    except (_Overran, Exception):
        traceback.print_exc()
        went_through = False
    finally:
        signal.signal(signal.SIGALRM, previous)
        if listener is not None:
            listener.close()
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(state_dir, ignore_errors=True)
    if not went_through:
        print("shim template: the rehearsal did not go through", file=sys.stderr)
    return went_through


def _reap_all(seconds: float) -> bool:
    """Reap the children left (the driver, the last worker); False if one outlives `seconds`.

    The template has no other children while it rehearses.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
