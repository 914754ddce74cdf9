"""Unmounting whatever a runtime left mounted under the run's own directories."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

MNT_DETACH: Final = 2


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_points(mountinfo: str) -> list[str]:
    return [unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]


def under(points: Iterable[str], roots: Iterable[Path]) -> list[str]:
    """The mount points inside any of `roots`, deepest first (children before parents)."""
    prefixes = [str(r).rstrip("/") + "/" for r in roots]
    inside = {p for p in points if any((p + "/").startswith(pre) for pre in prefixes)}
    return sorted(inside, key=lambda p: (p.count("/"), p), reverse=True)


def unmount_under(roots: Iterable[Path]) -> list[str]:
    """Lazily unmount every mount inside `roots`; returns what was unmounted."""
    libc = ctypes.CDLL(None, use_errno=True)
    done: list[str] = []
    for _ in range(5):  # stacked mounts on one point come off one layer per pass
        points = under(mount_points(Path("/proc/self/mountinfo").read_text()), roots)
        if not points:
            break
        for point in points:
            if libc.umount2(os.fsencode(point), MNT_DETACH) == 0:
                done.append(point)
    return done
