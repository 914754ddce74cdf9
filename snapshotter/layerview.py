"""Reading a file from an image's layer directories without mounting them.

Resolves a path the way overlayfs merges the layers (top layer first): a
whiteout (0/0 character device) deletes the name, an opaque directory hides
what lower layers have below it, and a non-directory in an upper layer hides
a lower layer's directory of the same name. Symlinks are followed inside the
image only — an absolute target restarts at the image root and ".." stops at
it, as if the image were the root filesystem — so a hostile image cannot make
the daemon read host files. Used to resolve users from /etc/passwd.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from snapshotter import errors
from snapshotter.unpack import OPAQUE_XATTR

MAX_SYMLINKS: Final = 40

_Hit = tuple[int, os.stat_result]


def read_file(layers: Sequence[Path], path: str, max_size: int) -> bytes | None:
    """The content of regular file `path` in the merged layers (top first), or None.

    None when the path does not exist, is not a regular file, or loops.
    InvalidArgument when the file is larger than `max_size`.
    """
    found = resolve(layers, path)
    if found is None:
        return None
    idx, parts = found
    fd = os.open(layers[idx].joinpath(*parts), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_size + 1)
    if len(data) > max_size:
        raise errors.InvalidArgument(f"file {path} in the image is larger than {max_size} bytes")
    return data


def resolve(layers: Sequence[Path], path: str) -> tuple[int, tuple[str, ...]] | None:
    """(layer index, components) of the regular file `path` resolves to, or None."""
    pending = _components(path)
    done: list[str] = []
    hit: _Hit | None = None
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            hit = None
            continue
        hit = lookup(layers, (*done, name))
        if hit is None:
            return None
        idx, st = hit
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                return None
            target = os.readlink(layers[idx].joinpath(*done, name))
            if target.startswith("/"):
                done = []
            pending = _components(target) + pending
            hit = None
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            return None
        done.append(name)
    if hit is None or not stat.S_ISREG(hit[1].st_mode):
        return None
    return hit[0], tuple(done)


def lookup(layers: Sequence[Path], parts: tuple[str, ...]) -> _Hit | None:
    """The topmost entry at exactly `parts` (symlinks on the way not followed), or None."""
    for idx, layer in enumerate(layers):
        st, blocked = _probe(layer, parts)
        if st is not None:
            return None if _is_whiteout(st) else (idx, st)
        if blocked:
            return None
    return None


def _probe(layer: Path, parts: tuple[str, ...]) -> tuple[os.stat_result | None, bool]:
    """(lstat of `parts` in this one layer, whether this layer hides lower ones there)."""
    cur = layer
    opaque = False
    for name in parts[:-1]:
        cur = cur / name
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None, opaque
        if not stat.S_ISDIR(st.st_mode):
            return None, True  # a whiteout, file or symlink replaces the lower directories
        opaque = opaque or _is_opaque(cur)
    try:
        return os.lstat(cur / parts[-1]), opaque
    except FileNotFoundError:
        return None, opaque


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return False
        raise


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]
