"""Turning a fork of the template (or a directly exec'd process) into a shim.

    template / `berth-shim spawn`          (the spawner: sets up, waits, answers)
      └─ fork: intermediate, setsid()      (writes shim.pid, reports, exits)
           └─ fork: the shim               (re-parented to init or a subreaper)

The double fork means the template never owns a shim, and neither the
template's nor berthd's death touches it: the shim runs in its own session,
has no controlling terminal and no parent death signal (it is cleared on
fork). The spawner creates the state directory, opens shim.log and listens
on `<state_dir>/shim.sock` (0600) before forking, so no shim writes the
pages that takes; the intermediate writes `shim.pid` atomically and reports
the pid, and then the spawner answers the spawn request. The shim becomes a
child subreaper (so the container's init is re-parented to it when runc
exits), points stdin/stdout at /dev/null and stderr at shim.log, closes
every other inherited descriptor and runs the keeper (shim.keeper).

Both forks are `raw_fork`: the spawner and the intermediate are single-threaded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from shim import api, errors, keeper, protocol, state

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)
# fork() called with the GIL held: the child continues as this thread, and
# CPython's after-fork handlers are skipped (see raw_fork).
_fork = ctypes.PyDLL(None, use_errno=True).fork


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def raw_fork() -> int:
    """fork(2) without CPython's after-fork work; only for a single-threaded process.

    os.fork() runs the interpreter's after-fork handlers in the child (thread
    states, locks, the at-fork hooks of threading, random, logging...), which
    write to ~140 pages a shim would otherwise keep sharing with the template.
    With one thread there is nothing for them to repair. The child must not
    rely on per-process state those handlers reset (random's seed, for one).
    """
    pid = int(_fork())
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid


def spawn_shim(spec: api.ShimSpec, reply_fd: int, request_id: object) -> bool:
    """Start a detached shim for `spec`, answer on `reply_fd` (not closed); True if it runs.

    What can be done before the fork is done here, in the spawner: the state
    directory, the refusal of a second shim, shim.log and the listening
    socket; after the fork, shim.pid and the answer. Pages written for those
    are the template's, shared by every shim, not each shim's own.
    """
    log = sock = None
    r = w = -1
    try:
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _refuse_if_live(spec)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        log = os.open(spec.state_dir / state.LOG, flags, 0o600)
        sock = _listen(spec.state_dir / state.SOCKET)
        r, w = os.pipe2(os.O_CLOEXEC)
        intermediate = raw_fork()
        if intermediate == 0:
            _intermediate(spec, sock, log, w)
        os.close(w)
        w = -1
        os.waitpid(intermediate, 0)
        pid = int(os.read(r, 32) or b"0")
        if pid <= 0:
            raise errors.Unavailable(f"shim {spec.id} did not start (see {state.LOG})")
    except (OSError, ValueError, errors.Error) as e:
        if sock is not None:
            _cleanup(spec.state_dir)
        _answer(reply_fd, protocol.error_response(request_id, e))
        return False
    finally:
        for fd in (r, w, log):
            if fd is not None and fd >= 0:
                os.close(fd)
        if sock is not None:
            sock.close()
    _answer(reply_fd, protocol.response(request_id, {"pid": pid}))
    return True


def _intermediate(spec: api.ShimSpec, sock: socket.socket, log: int, report: int) -> NoReturn:
    """setsid(), fork the shim, write shim.pid, report the pid on `report`, exit.

    shim.pid is written here, not by the spawner: the template dies with
    berthd, and a shim without its pid file would be a shim nobody finds.
    """
    pid = 0
    try:
        os.setsid()
        pid = raw_fork()
        if pid == 0:
            become_shim(spec, sock, log)
        # Not fsync'ed: a pid is meaningless after a crash of the machine.
        state.write_atomic(spec.state_dir / state.PID, f"{pid}\n".encode(), durable=False)
        os.write(report, b"%d" % pid)
        os._exit(0)
    except BaseException:
        traceback.print_exc()
        if pid > 0 and not (spec.state_dir / state.PID).exists():
            os.kill(pid, signal.SIGKILL)  # nobody could find it
    os._exit(1)


def become_shim(spec: api.ShimSpec, sock: socket.socket, log: int) -> NoReturn:
    """Run as the shim for `spec` (listening on `sock`) until deleted; never returns."""
    code = 1
    try:
        _detach(sock.fileno(), log)
        keeper.Keeper(spec, sock).run()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        _cleanup(spec.state_dir)
        sys.stderr.flush()
        os._exit(code)


def _detach(keep: int, log: int) -> None:
    """Process-wide setup: /dev/null and shim.log as 0, 1, 2; no descriptor but `keep`.

    The spawner's sockets are closed by number: their objects stay on its
    stack, never collected, so nothing closes those numbers a second time.
    """
    os.umask(0o022)
    os.chdir("/")
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd, target in ((null, 0), (null, 1), (log, 2)):
        os.dup2(fd, target)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 20)


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
        pass  # the requester went away; the shim carries on


def _cleanup(state_dir: Path) -> None:
    state.remove_quietly(state_dir / state.SOCKET)
    state.remove_quietly(state_dir / state.PID)
