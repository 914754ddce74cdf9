"""Files in a shim's state directory, written so a crash never leaves half a file.

    <state_dir>/shim.sock   the shim's socket (0600)
    <state_dir>/shim.pid    the shim's pid, written once it listens
    <state_dir>/shim.log    the shim's own stderr (tracebacks, nothing routine)
    <state_dir>/task.json   how the task was created (for `berth-shim delete`)
    <state_dir>/exit.json   the exit status (see shim.exitfile)

Atomic write: write a temporary file, fsync it, rename it over the target,
fsync the directory. Readers see the old or the new content, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shim import protocol

SOCKET = "shim.sock"
PID = "shim.pid"
LOG = "shim.log"
TASK = "task.json"
EXIT = "exit.json"
TEMPLATE_SOCKET = "template.sock"

# sun_path holds 108 bytes; leave room for the terminating NUL.
SUN_PATH_MAX = 107


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; with `durable`, also survive a crash.

    Without `durable` (for files that mean nothing after a reboot, like the
    pid file on a tmpfs) the two fsyncs are skipped: readers still never see
    half a file. Plain string operations on the path: the keeper writes
    exit.json with this, and pathlib is code it would otherwise run.
    """
    parent, slash, name = os.fspath(path).rpartition("/")
    if not slash:
        parent = "."  # a bare file name: the current directory
    tmp = f"{parent}/.{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(parent or "/")


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any, durable: bool = True) -> None:
    write_atomic(path, protocol.dumps(obj).encode() + b"\n", durable=durable)


def read_json(path: str | Path) -> Any:
    """The decoded file, or None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    finally:
        os.close(fd)
    return json.loads(data)


def read_pid(state_dir: Path) -> int | None:
    """The pid in shim.pid, or None when absent or garbled."""
    try:
        return int((state_dir / PID).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process (not a zombie) with this pid exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or after it
        return False
    # The state letter follows the command name, which is in parentheses.
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def socket_path(path: Path, pid: int | None = None) -> Iterator[str]:
    """Yield a name for the unix socket `path` that fits in sun_path.

    Long paths are reached through an O_PATH descriptor of the directory:
    `/proc/<pid>/fd/<n>/<name>`. Pass `pid` when another process (runc) must
    use the name; by default it is `self`.
    """
    text = str(path)
    if len(text.encode()) <= SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/{pid if pid is not None else 'self'}/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
