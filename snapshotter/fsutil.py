"""Walking a directory tree one component at a time, never following a symlink.

Layer tars and image files are hostile: a path inside them may name a
symlink planted earlier that points anywhere on the host. Everything here
opens each component relative to its parent's fd with O_NOFOLLOW, so a path
can only ever resolve to a directory inside the root it started from.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
from pathlib import Path
from typing import Final

DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(Exception):
    """A path component is a symlink or a non-directory where a directory must be."""


def split(name: str) -> tuple[str, ...]:
    """The components of a relative archive path; ValueError for absolute paths or "..".

    "./a//b/" gives ("a", "b"); "." and "" give ().
    """
    if name.startswith("/"):
        raise ValueError("absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("'..' component")
    if any("\0" in p for p in parts):
        raise ValueError("NUL in path")
    return parts


def open_dir(parent_fd: int, name: str) -> int:
    """Open directory `name` under `parent_fd`; UnsafePath if it is a symlink or not a dir."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{name!r} is a symlink or not a directory") from None
        raise


class DirFds:
    """Cached directory fds below a root fd, opened component by component.

    `get(parts, create=True)` makes missing directories (mode 0755, like
    tar's implicit parents). Call `forget(parts)` before replacing the entry
    at `parts`, so no stale fd of a removed directory is handed out, and
    `trim()` between entries (never while holding an fd from `get`) to bound
    how many stay open.
    """

    _MAX: Final = 256

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._fds: dict[tuple[str, ...], int] = {}

    def trim(self) -> None:
        if len(self._fds) >= self._MAX:
            self.close()

    def get(self, parts: tuple[str, ...], *, create: bool) -> int:
        return self._get(parts, create)

    def _get(self, parts: tuple[str, ...], create: bool) -> int:
        if not parts:
            return self._root
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        parent = self._get(parts[:-1], create)
        fd = self._open(parent, parts[-1], create)
        self._fds[parts] = fd
        return fd

    @staticmethod
    def _open(parent: int, name: str, create: bool) -> int:
        try:
            return open_dir(parent, name)
        except FileNotFoundError:
            if not create:
                raise
        os.mkdir(name, 0o755, dir_fd=parent)
        os.chmod(name, 0o755, dir_fd=parent)  # the umask must not decide
        return open_dir(parent, name)

    def forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached fds of `parts` and everything below it."""
        n = len(parts)
        for key in [k for k in self._fds if k[:n] == parts]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def proc_path(dir_fd: int, name: str) -> str:
    """A path naming entry `name` of an open directory, for calls that take no dir_fd.

    The kernel resolves the /proc magic link to the directory itself; with
    follow_symlinks=False the final component is not followed either.
    """
    return f"/proc/self/fd/{dir_fd}/{name}"


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding `path` (one call instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_usage(path: Path) -> tuple[int, int]:
    """(allocated bytes, inodes) of the tree at `path`, hardlinks counted once, like du."""
    seen: set[int] = set()
    size = 0
    stack = [path]
    st = os.lstat(path)
    seen.add(st.st_ino)
    size += st.st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    size += st.st_blocks * 512
    return size, len(seen)


def mountpoint_of(path: Path) -> str:
    """The mount point of the filesystem holding `path` (longest match in mountinfo)."""
    target = str(path.resolve())
    best = "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mnt = _unescape(line.split()[4])
            inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) > len(best):
                best = mnt
    return best


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
