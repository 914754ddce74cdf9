"""The template process: a warmed Python that forks shims on request.

berthd execs it once (shim.launcher): `python -I -S -c <bootstrap> template
--dir D --parent PID`. It imports every module a shim needs, runs a keeper
through a rehearsal eight times (shim.rehearsal), freezes the GC (so
collections in the shims don't touch the shared pages), listens on
`<D>/template.sock` (0600), prints "ready" and serves spawn requests one at
a time: read `{"id", "method": "spawn", "params": ShimSpec}`, set up and fork the shim
(shim.daemon.serve_spawn, double fork) and answer with its pid once it is
listening. The template has PR_SET_PDEATHSIG=SIGKILL so it dies with berthd;
the shims it forked do not (the death signal is not inherited across fork).

Forking a warmed process costs ~0.8 ms and shares the interpreter's pages
copy-on-write (FLOORS §5); exec'ing a fresh Python costs ~20 ms and ~5 MB.

Copy-on-write alone keeps little shared: every object a shim touches gets
its reference count written, and CPython's objects are spread over the whole
heap, so each Python function a shim runs costs it a few pages of its own
(~3-4 on average, measured: its function and code objects, constants, the
objects it refers to). A keeper with a running container owns ~1.5 MiB this
way, against ~0.4 MiB for a fork that only blocks in read(). What keeps that
down: the keeper runs its own code and little else (no pathlib, socket
objects, json wrappers or typing at run time; see shim.keeper), the template
writes little per spawn (shim.daemon) and the rehearsal fills the
interpreter's caches before the fork. Most of the pages a keeper owns end up
the same in every shim (counts that went up and down again), so the template
also marks its private memory mergeable (madvise MADV_MERGEABLE): where the
host runs KSM (/sys/kernel/mm/ksm/run = 1) the kernel merges the identical
pages back. Without ksmd the mark costs nothing. Only mappings that exist in
the template are marked: memory a shim maps later, and whatever it execs
(runc, the container), is never scanned.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import socket
import sys
import time
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
    rehearsal,
    runtime,
    state,
    stdio,
    streams,
    workers,
)

MADV_MERGEABLE = 12

# CPython 3.11 specialises a function's bytecode in place once it has run 8
# times; until then every call writes to its code object, and the adaptive
# instructions write their counters. Eight rehearsals leave the keeper's code
# specialised in the template, so the shims do not each write it: ~0.1 MiB
# less per shim with its container running (docs/bench/keeper.md); ~25 ms each.
REHEARSALS = 8

_libc = ctypes.CDLL(None, use_errno=True)


def run(template_dir: Path, parent: int | None) -> NoReturn:
    """Serve spawn requests forever (until killed, or berthd dies)."""
    daemon.prctl(daemon.PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # berthd died before the death signal was armed
    _warm()
    for _ in range(REHEARSALS):
        if not rehearsal.rehearse(template_dir / "rehearsal"):
            break  # (printed) a failing rehearsal would fail again: serve without it
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
        # The C-level accept: a socket object per spawn would be pages written here,
        # each one then private to the shim just forked (see daemon.serve_spawn).
        try:
            conn, _ = listener._accept()  # type: ignore[attr-defined]
        except OSError:  # EMFILE and the like: give the system a moment
            time.sleep(0.05)
            continue
        try:
            daemon.serve_spawn(conn)
        finally:
            os.close(conn)


def _warm() -> None:
    # Import what asyncio loads lazily when the first loop is made, and fill
    # caches the shims would otherwise each fill in private memory.
    import asyncio

    asyncio.new_event_loop().close()
    api.warm_codec()
    exitfile.warm_codec()
    oom.cgroup_mounts()


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
