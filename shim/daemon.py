"""Turning a fork of the template (or a directly exec'd process) into a shim.

    template / `berth-shim spawn`          (waits for the intermediate only)
      └─ fork: intermediate, setsid()      (exits at once)
           └─ fork: the shim               (re-parented to init or a subreaper)

The double fork means the template never owns a shim, and neither the
template's nor berthd's death touches it: the shim runs in its own session,
has no controlling terminal and no parent death signal (it is cleared on
fork). The shim then becomes a child subreaper (so the container's init and
exec'd processes are re-parented to it when runc exits), points stdin/stdout
at /dev/null and stderr at `<state_dir>/shim.log`, closes every other
inherited descriptor, listens on `<state_dir>/shim.sock` (0600), writes
`shim.pid` atomically, and only then answers the spawn request on the reply
descriptor it was given.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from shim import api, errors, procs, protocol, server, state, task

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def fork_shim(
    spec: api.ShimSpec, reply_fd: int, request_id: object, close: Sequence[socket.socket] = ()
) -> int:
    """Fork a detached shim; return the intermediate's pid, which the caller must reap.

    `reply_fd` receives one response frame from the shim once it listens
    (or an error). `close` are sockets of the caller the shim must not keep.
    """
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        reply = os.dup(reply_fd)  # reply_fd may belong to one of `close`
        for sock in close:
            sock.close()
        become_shim(spec, reply, request_id)
    except BaseException:
        traceback.print_exc()
    os._exit(1)


def become_shim(spec: api.ShimSpec, reply_fd: int, request_id: object) -> NoReturn:
    """Set the process up as the shim for `spec` and serve until deleted; never returns."""
    code = 1
    reply: int | None = None
    listening = False
    try:
        reply = _detach(spec.state_dir, reply_fd)
        _refuse_if_live(spec)
        sock = _listen(spec.state_dir / state.SOCKET)
        listening = True
        # Not fsync'ed: a pid is meaningless after a crash of the machine.
        state.write_atomic(spec.state_dir / state.PID, f"{os.getpid()}\n".encode(), durable=False)
        _answer(reply, protocol.response(request_id, {"pid": os.getpid()}))
        reply = None
        asyncio.run(_serve(spec, sock))
        code = 0
    except BaseException as e:
        traceback.print_exc()
        if reply is not None:
            _answer(reply, protocol.error_response(request_id, e))
    finally:
        if listening:
            _cleanup(spec.state_dir)
        sys.stderr.flush()
        os._exit(code)


def _detach(state_dir: Path, reply_fd: int) -> int:
    """Process-wide setup; returns the reply descriptor, moved out of the way."""
    os.umask(0o022)
    os.chdir("/")
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    reply = os.dup(reply_fd)  # the reply fd may be our stdout (direct spawn)
    os.close(reply_fd)
    os.set_blocking(reply, True)
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(state_dir / state.LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd, target in ((null, 0), (null, 1), (log, 2)):
        os.dup2(fd, target)
    os.closerange(3, reply)
    os.closerange(reply + 1, 1 << 20)
    return reply


def _refuse_if_live(spec: api.ShimSpec) -> None:
    pid = state.read_pid(spec.state_dir)
    if pid is not None and pid != os.getpid() and state.pid_alive(pid):
        raise errors.AlreadyExists(f"shim {spec.id} is already running as pid {pid}")


def _listen(path: Path) -> socket.socket:
    state.remove_quietly(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with state.socket_path(path) as name:
        old = os.umask(0o177)  # 0600 from the start, no window
        try:
            sock.bind(name)
        finally:
            os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _answer(fd: int, message: dict[str, Any]) -> None:
    try:
        data = protocol.encode(message)
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # the spawner went away; the shim carries on
    finally:
        os.close(fd)


async def _serve(spec: api.ShimSpec, sock: socket.socket) -> None:
    reaper = procs.Reaper()
    reaper.install(asyncio.get_running_loop())
    t = task.Task(id=spec.id, state_dir=spec.state_dir, reaper=reaper)
    await server.Server(t).serve(sock)


def _cleanup(state_dir: Path) -> None:
    state.remove_quietly(state_dir / state.SOCKET)
    state.remove_quietly(state_dir / state.PID)
