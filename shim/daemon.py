"""Turning a fork of the template (or a directly exec'd process) into a shim.

    template / `berth-shim spawn`          (the spawner: sets up, waits, answers)
      └─ fork: intermediate, setsid()      (writes shim.pid, reports, exits)
           └─ fork: the shim               (re-parented to init or a subreaper)

The double fork means the template never owns a shim, and neither the
template's nor berthd's death touches it: the shim runs in its own session,
has no controlling terminal and no parent death signal (it is cleared on
fork). The spawner creates the state directory, opens shim.log and listens
on `<state_dir>/shim.sock` (0600) before forking; the intermediate writes
`shim.pid` atomically and reports the pid, and then the spawner answers the
spawn request. The shim becomes a child subreaper (so the container's init
is re-parented to it when runc exits), points stdin/stdout at /dev/null and
stderr at shim.log, closes every other inherited descriptor and runs the
keeper (shim.keeper).

What the template writes while it serves a spawn costs the shims memory:
after each fork the template's next write to a page gives it a copy, and
the page as it was stays with the shim just forked, private to it. The
template's side (`serve_spawn`, `spawn_shim`) therefore uses strings, bare
descriptors and C calls only: ~60 pages per spawn where the first version
(pathlib, socket objects, dataclasses, json.dumps) wrote ~160.

Both forks are `raw_fork`: the spawner and the intermediate are single-threaded.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any, NoReturn

from shim import api, errors, keeper, protocol, state

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

REQUEST_TIMEOUT = 5.0

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


def serve_spawn(conn: int) -> None:
    """(template) Read one spawn request on `conn`, start the shim, answer on `conn`.

    `conn` is left open. Runs for every spawn, so it stays lean (see the module doc).
    """
    request_id: object = None
    try:
        message = _read_frame(conn)
        request_id = message.get("id")
        shim_id, state_dir = _spawn_params(message)
    except (OSError, protocol.ProtocolError, errors.Error) as e:
        _answer(conn, protocol.error_response(request_id, e))
        return
    spawn_shim(shim_id, state_dir, conn, request_id)


def _spawn_params(message: dict[str, Any]) -> tuple[str, str]:
    """(shim id, state dir) of a valid spawn request; InvalidArgument otherwise."""
    params = message.get("params")
    if message.get("method") != "spawn":
        raise errors.InvalidArgument(f"template: unknown method {message.get('method')!r}")
    if not isinstance(params, dict):
        raise errors.InvalidArgument("template: spawn params must be an object")
    shim_id, state_dir = params.get("id"), params.get("state_dir")
    if not isinstance(shim_id, str) or not isinstance(state_dir, str):
        raise errors.InvalidArgument("template: a spawn request needs id and state_dir")
    api.check_spec(shim_id, state_dir)
    return shim_id, state_dir


def _read_frame(conn: int) -> dict[str, Any]:
    """One request frame from the blocking `conn`, within REQUEST_TIMEOUT in all."""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    buf = bytearray()
    while (body := protocol.take_frame(buf, protocol.MAX_REQUEST)) is None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select((conn,), (), (), left)[0]:
            raise errors.DeadlineExceeded("template: no whole spawn request in time")
        chunk = os.read(conn, 1 << 16)
        if not chunk:
            raise protocol.ProtocolError("template: connection closed inside the request")
        buf += chunk
    return protocol.decode_body(body)


def spawn_shim(shim_id: str, state_dir: str, reply_fd: int, request_id: object) -> bool:
    """Start a detached shim, answer on `reply_fd` (not closed); True if it runs.

    Before the fork: the state directory, the refusal of a second shim,
    shim.log and the listening socket; the intermediate writes shim.pid; then
    the answer.
    """
    log = sock = -1
    r = w = -1
    try:
        _make_dir(state_dir)
        _refuse_if_live(shim_id, state_dir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        log = os.open(state_dir + "/" + state.LOG, flags, 0o600)
        sock = listen(state_dir + "/" + state.SOCKET)
        r, w = os.pipe2(os.O_CLOEXEC)
        intermediate = raw_fork()
        if intermediate == 0:
            _intermediate(shim_id, state_dir, sock, log, w)
        os.close(w)
        w = -1
        os.waitpid(intermediate, 0)
        pid = int(os.read(r, 32) or b"0")
        if pid <= 0:
            raise errors.Unavailable(f"shim {shim_id} did not start (see {state.LOG})")
    except (OSError, ValueError, errors.Error) as e:
        if sock >= 0:
            _cleanup(state_dir)
        _answer(reply_fd, protocol.error_response(request_id, e))
        return False
    finally:
        for fd in (r, w, log, sock):
            if fd >= 0:
                os.close(fd)
    _answer(reply_fd, protocol.response(request_id, {"pid": pid}))
    return True


def _intermediate(shim_id: str, state_dir: str, sock: int, log: int, report: int) -> NoReturn:
    """setsid(), fork the shim, write shim.pid, report the pid on `report`, exit.

    shim.pid is written here, not by the spawner: the template dies with
    berthd, and a shim without its pid file would be a shim nobody finds.
    """
    pid = 0
    try:
        os.setsid()
        pid = raw_fork()
        if pid == 0:
            become_shim(shim_id, state_dir, sock, log)
        # Not fsync'ed: a pid is meaningless after a crash of the machine.
        state.write_atomic(f"{state_dir}/{state.PID}", f"{pid}\n".encode(), durable=False)
        os.write(report, b"%d" % pid)
        os._exit(0)
    except BaseException:
        traceback.print_exc()
        if pid > 0 and not os.path.exists(f"{state_dir}/{state.PID}"):
            os.kill(pid, signal.SIGKILL)  # nobody could find it
    os._exit(1)


def become_shim(shim_id: str, state_dir: str, sock: int, log: int) -> NoReturn:
    """Run as shim `shim_id` (listening on `sock`) until deleted; never returns."""
    code = 1
    try:
        _detach(sock, log)
        keeper.Keeper(shim_id, state_dir, socket.SocketType(fileno=sock)).run()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        _cleanup(state_dir)
        sys.stderr.flush()
        os._exit(code)


def _detach(keep: int, log: int) -> None:
    """Process-wide setup: /dev/null and shim.log as 0, 1, 2; no descriptor but `keep`.

    The spawner's descriptors are closed by number: whatever objects held them
    stay on its stack, never collected, so nothing closes those numbers again.
    """
    os.umask(0o022)
    os.chdir("/")
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd, target in ((null, 0), (null, 1), (log, 2)):
        os.dup2(fd, target)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 20)


def _make_dir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, 0o700, exist_ok=True)


def _refuse_if_live(shim_id: str, state_dir: str) -> None:
    try:
        fd = os.open(state_dir + "/" + state.PID, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        pid = int(os.read(fd, 32).strip() or b"0")
    except ValueError:
        return
    finally:
        os.close(fd)
    if pid > 0 and pid != os.getpid() and state.pid_alive(pid):
        raise errors.AlreadyExists(f"shim {shim_id} is already running as pid {pid}")


def listen(path: str) -> int:
    """A listening, non-blocking unix socket at `path` (0600), as a bare descriptor."""
    try:
        os.unlink(path)
    except FileNotFoundError:  # (not contextlib.suppress: Python code run per spawn)
        pass
    # The C socket type: socket.socket's Python layer would be pages written per spawn.
    sock = socket.SocketType(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)  # 0600 from the start, no window
        try:
            if len(path.encode()) <= state.SUN_PATH_MAX:
                sock.bind(path)
            else:
                _bind_through_directory(sock, path)
        finally:
            os.umask(old)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock.detach()


def _bind_through_directory(sock: socket.SocketType, path: str) -> None:
    # What state.socket_path does for a path too long for sun_path, with bare os calls:
    # its pathlib and contextlib code would be run (and pages written) per spawn.
    directory, _, name = path.rpartition("/")
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


def _answer(fd: int, message: dict[str, Any]) -> None:
    data = protocol.encode(message)
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # the requester went away; the shim carries on


def _cleanup(state_dir: str) -> None:
    for name in (state.SOCKET, state.PID):
        try:
            os.unlink(f"{state_dir}/{name}")
        except FileNotFoundError:  # (not contextlib.suppress: the shim runs this)
            pass
