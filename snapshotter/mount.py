"""Performing the `Mount`s a snapshotter describes: mount(2) and umount2(2) through ctypes.

The snapshotter only describes mounts; callers that need a tree on disk (the
image store's tests, tools, a shim with its own copy of this logic) mount
them here. Overlay mount data is limited to one page: when a long chain of
absolute lowerdirs exceeds it, the lowerdirs are rewritten relative to their
common directory and mount(2) runs in a short-lived thread that has
unshared its working directory (CLONE_FS), so the rest of the process never
sees a chdir.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from snapshotter import errors
from snapshotter.api import Mount

PAGE_SIZE: Final = os.sysconf("SC_PAGESIZE")

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_REMOUNT: Final = 0x20
MS_NOATIME: Final = 0x400
MS_NODIRATIME: Final = 0x800
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_RELATIME: Final = 0x200000
MS_STRICTATIME: Final = 0x1000000
MNT_DETACH: Final = 0x2
_CLONE_FS: Final = 0x200

# option -> (flags to set, flags to clear)
_FLAGS: Final[dict[str, tuple[int, int]]] = {
    "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY),
    "bind": (MS_BIND, 0),
    "rbind": (MS_BIND | MS_REC, 0),
    "nosuid": (MS_NOSUID, 0),
    "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0),
    "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0),
    "exec": (0, MS_NOEXEC),
    "noatime": (MS_NOATIME, 0),
    "nodiratime": (MS_NODIRATIME, 0),
    "relatime": (MS_RELATIME, 0),
    "strictatime": (MS_STRICTATIME, 0),
}
_REMOUNT_KEEP: Final = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_RELATIME

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """mount(2) flags and the filesystem data string for mount(8)-style options."""
    flags, data = 0, []
    for opt in options:
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            flags = (flags | on) & ~off
        else:
            data.append(opt)
    return flags, ",".join(data)


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    """Mount each of `mounts` on `target`, in order; on failure undo what was mounted."""
    done = 0
    try:
        for m in mounts:
            mount_one(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target, detach=True)
        raise


def mount_one(m: Mount, target: Path) -> None:
    flags, data = parse_options(m.options)
    if flags & MS_BIND:
        _mount(m.source, target, "", flags & ~MS_RDONLY, "")
        if flags & MS_RDONLY:  # a bind mount only becomes read-only by remounting it
            _mount("", target, "", MS_REMOUNT | MS_BIND | (flags & _REMOUNT_KEEP), "")
    elif m.type == "overlay" and len(data) >= PAGE_SIZE:
        _mount_long_overlay(m, target.absolute(), flags, data)
    else:
        _mount(m.source, target, m.type, flags, data)


def unmount(target: Path, *, detach: bool = False) -> bool:
    """Unmount the top mount on `target`; False if nothing was mounted there (idempotent)."""
    rc = _libc.umount2(os.fsencode(target), MNT_DETACH if detach else 0)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise errors.Error(f"umount {target}: {os.strerror(err)}")


def unmount_all(target: Path, *, detach: bool = False) -> None:
    """Unmount everything stacked on `target`."""
    while unmount(target, detach=detach):
        pass


def writable_dir(mounts: Sequence[Mount]) -> Path:
    """The directory where writes to these mounts land (overlay upperdir or a rw bind source)."""
    if len(mounts) == 1:
        m = mounts[0]
        upper = m.option("upperdir")
        if m.type == "overlay" and upper:
            return Path(upper)
        if m.type == "bind" and "ro" not in m.options:
            return Path(m.source)
    raise errors.InvalidArgument(f"mounts {mounts!r} have no single writable directory")


def _mount(source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    rc = _libc.mount(
        os.fsencode(source) if source else None,
        os.fsencode(target),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise errors.Error(f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def compact_lowerdirs(data: str) -> tuple[str, str]:
    """Rewrite the lowerdir= option of overlay data relative to the lowerdirs' common directory.

    Returns (new data, the directory they are relative to).
    """
    opts = data.split(",")
    idx = next(i for i, o in enumerate(opts) if o.startswith("lowerdir="))
    lowers = opts[idx].removeprefix("lowerdir=").split(":")
    common = os.path.commonpath(lowers) if len(lowers) > 1 else os.path.dirname(lowers[0])
    opts[idx] = "lowerdir=" + ":".join(os.path.relpath(x, common) for x in lowers)
    return ",".join(opts), common


def _mount_long_overlay(m: Mount, target: Path, flags: int, data: str) -> None:
    short, cwd = compact_lowerdirs(data)
    if len(short) >= PAGE_SIZE:
        raise errors.InvalidArgument(
            f"overlay on {target}: {len(short)} bytes of options even with relative lowerdirs"
        )
    _in_private_cwd(cwd, lambda: _mount(m.source, target, "overlay", flags, short))


def _in_private_cwd(cwd: str, fn: Callable[[], None]) -> None:
    """Run `fn` in a fresh thread whose working directory is `cwd` and nobody else's."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.unshare(_CLONE_FS) != 0:
                err = ctypes.get_errno()
                raise errors.Error(f"unshare(CLONE_FS): {os.strerror(err)}")
            os.chdir(cwd)
            fn()
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="berth-mount")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
