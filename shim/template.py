"""The template process: a warmed Python that forks shims on request.

berthd execs it once (shim.launcher): `python -I -S -c <bootstrap> template
--dir D --parent PID`. It imports every module a shim needs, freezes the GC
(so collections in the shims don't touch the shared pages), listens on
`<D>/template.sock` (0600), prints "ready" and serves spawn requests one at
a time: read `{"id", "method": "spawn", "params": ShimSpec}`, set up and
fork the shim (shim.daemon.spawn_shim, double fork) and answer with its pid
once it is listening. The
template has PR_SET_PDEATHSIG=SIGKILL so it dies with berthd; the shims
it forked do not (the death signal is not inherited across fork).

Forking a warmed process costs ~0.8 ms and shares the interpreter's pages
copy-on-write (FLOORS §5); exec'ing a fresh Python costs ~20 ms and ~5 MB.

Copy-on-write alone keeps little shared: every object a shim touches gets
its reference count written, and CPython's objects are spread over the whole
heap, so a shim with a running container has written to ~1,200 of the ~2,800
pages the template owns (4.6 MiB private; perf puts most of the write faults
in frame set-up, attribute and type lookups, i.e. reference counts, a few
in the allocator, none in the GC). Most of those pages end up the same in every shim (counts
that went up and down again). The template therefore marks its private
memory mergeable (madvise MADV_MERGEABLE): where the host runs KSM
(/sys/kernel/mm/ksm/run = 1) the kernel merges the identical pages back,
which brings such a shim to ~1 MiB PSS. Without ksmd the mark costs
nothing. Only mappings that exist in the template are marked: memory a shim
maps later, and whatever it execs (runc, the container), is never scanned.
"""

from __future__ import annotations

import contextlib
import ctypes
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
    keeper,
    logger,
    mount,
    oom,
    procs,
    protocol,
    runtime,
    state,
    stdio,
    streams,
    workers,
)

REQUEST_TIMEOUT = 5.0
MADV_MERGEABLE = 12

_libc = ctypes.CDLL(None, use_errno=True)


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
    mark_mergeable()
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


def mergeable_ranges(maps: str) -> list[tuple[int, int]]:
    """(start, end) of the private writable mappings in /proc/<pid>/maps text.

    Anonymous memory, [heap] and the data segments of the interpreter and its
    libraries; not the stack or other special mappings.
    """
    ranges = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5 or len(fields[1]) != 4 or fields[1][1] != "w" or fields[1][3] != "p":
            continue
        name = fields[5].strip() if len(fields) > 5 else ""
        if name.startswith("[") and name != "[heap]":
            continue
        start, _, end = fields[0].partition("-")
        ranges.append((int(start, 16), int(end, 16)))
    return ranges


def mark_mergeable() -> int:
    """madvise(MADV_MERGEABLE) the template's private memory; the number of ranges marked.

    Failures are ignored: a kernel without KSM just keeps the pages as they are.
    """
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return 0
    marked = 0
    for start, end in mergeable_ranges(maps):
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_MERGEABLE) == 0:
            marked += 1
    return marked


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
    daemon.spawn_shim(spec, conn.fileno(), request_id)


def _reply_error(conn: socket.socket, request_id: object, exc: BaseException) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(protocol.encode(protocol.error_response(request_id, exc)))
