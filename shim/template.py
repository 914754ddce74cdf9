"""The template process: a warmed Python that forks shims on request.

berthd execs it once (shim.launcher): `python -I -S -c <bootstrap> template
--dir D --parent PID`. It imports every module a shim needs, freezes the GC
(so collections in the shims don't touch the shared pages), listens on
`<D>/template.sock` (0600), prints "ready" and serves spawn requests one at
a time: read `{"id", "method": "spawn", "params": ShimSpec}`, fork the shim
(shim.daemon, double fork), reap the intermediate, go on. The shim answers
the request itself on the inherited connection once it listens. The
template has PR_SET_PDEATHSIG=SIGKILL so it dies with berthd; the shims
it forked do not (the death signal is not inherited across fork).

Forking a warmed process costs ~0.8 ms and shares the interpreter's pages
copy-on-write (FLOORS §5); exec'ing a fresh Python costs ~20 ms and ~5 MB.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
from pathlib import Path
from typing import NoReturn

# Everything a shim imports, so that the forked children never import.
from shim import (  # noqa: F401
    api,
    attach,
    daemon,
    errors,
    execs,
    exitfile,
    fdio,
    logger,
    mount,
    oom,
    procs,
    protocol,
    runtime,
    server,
    state,
    stdio,
    streams,
    task,
)

REQUEST_TIMEOUT = 5.0


def run(template_dir: Path, parent: int | None) -> NoReturn:
    """Serve spawn requests forever (until killed, or berthd dies)."""
    daemon.prctl(daemon.PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # berthd died before the death signal was armed
    _warm()
    listener = _listen(template_dir / state.TEMPLATE_SOCKET)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    gc.freeze()
    while True:
        conn, _ = listener.accept()
        with conn:
            _handle(conn, listener)


def _warm() -> None:
    # Import what asyncio loads lazily when the first loop is made, and fill
    # caches the shims would otherwise each fill in private memory.
    import asyncio

    asyncio.new_event_loop().close()
    api.warm_codec()
    exitfile.warm_codec()


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    state.remove_quietly(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with state.socket_path(path) as name:
        old = os.umask(0o177)
        try:
            sock.bind(name)
        finally:
            os.umask(old)
    sock.listen(64)
    return sock


def _handle(conn: socket.socket, listener: socket.socket) -> None:
    conn.settimeout(REQUEST_TIMEOUT)
    request_id: object = None
    try:
        msg = protocol.read_message_blocking(conn, protocol.MAX_REQUEST)
        request_id = msg.get("id")
        if msg.get("method") != "spawn":
            raise errors.InvalidArgument(f"template: unknown method {msg.get('method')!r}")
        spec = api.from_wire(api.ShimSpec, msg.get("params"))
        spec.validate()
    except (OSError, protocol.ProtocolError, errors.Error) as e:
        _reply_error(conn, request_id, e)
        return
    conn.setblocking(True)
    pid = daemon.fork_shim(spec, conn.fileno(), request_id, close=(listener, conn))
    os.waitpid(pid, 0)


def _reply_error(conn: socket.socket, request_id: object, exc: BaseException) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(protocol.encode(protocol.error_response(request_id, exc)))
