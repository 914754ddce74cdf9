"""Undo everything a run made: a LIFO of teardown steps, mounts, cgroups, signals.

Teardown steps run in reverse order of registration, each once, each even when an earlier one
failed (its error is reported, not raised). SIGINT and SIGTERM become KeyboardInterrupt so the
`finally` that runs the teardown is reached from Ctrl-C and from `kill PID` alike.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

MNT_DETACH = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MountEntry:
    mountpoint: str
    fstype: str
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, rest = head.split(), tail.split()
        entries.append(
            MountEntry(
                mountpoint=_unescape(fields[4]),
                fstype=rest[0],
                super_options=tuple(rest[2].split(",")) if len(rest) > 2 else (),
            )
        )
    return entries


def mounts_under(root: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `root`, deepest (and latest) first: the order to unmount."""
    prefix = str(root).rstrip("/")
    points = [
        e.mountpoint
        for e in parse_mountinfo(mountinfo)
        if e.mountpoint == prefix or e.mountpoint.startswith(prefix + "/")
    ]
    return list(reversed(points))


def own_cgroup_dirs(self_cgroup: str, mountinfo: str) -> list[Path]:
    """Our cgroup's directory in every mounted hierarchy (v1 controllers, named, and v2)."""
    mounts = [e for e in parse_mountinfo(mountinfo) if e.fstype in ("cgroup", "cgroup2")]
    out = []
    for line in self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(",")) if controllers else set()
        for mount in mounts:
            if _same_hierarchy(mount, wanted):
                out.append(Path(mount.mountpoint) / path.lstrip("/"))
                break
    return out


def _same_hierarchy(mount: MountEntry, controllers: set[str]) -> bool:
    if not controllers:
        return mount.fstype == "cgroup2"
    return mount.fstype == "cgroup" and controllers <= set(mount.super_options)


def read_own_cgroup_dirs() -> list[Path]:
    return own_cgroup_dirs(
        Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text()
    )


def remove_cgroup_tree(top: Path) -> list[str]:
    """rmdir `top` and everything below it, leaves first; returns what could not be removed."""
    if not top.is_dir():
        return []
    failed = []
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError as exc:
            failed.append(f"{dirpath}: {exc.strerror}")
    return failed


_libc = ctypes.CDLL(None, use_errno=True)


def unmount(path: str) -> str | None:
    """Lazily unmount `path`; the error text, or None on success."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        return f"umount {path}: {os.strerror(ctypes.get_errno())}"
    return None


def unmount_under(root: Path) -> list[str]:
    errors = []
    for point in mounts_under(root, Path("/proc/self/mountinfo").read_text()):
        error = unmount(point)
        if error:
            errors.append(error)
    return errors


class Teardown:
    """Steps to undo, run last-registered first by `run()` (which is idempotent)."""

    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def add(self, what: str, step: Callable[[], object]) -> None:
        self._steps.append((what, step))

    def run(self) -> list[str]:
        errors = []
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except BaseException as exc:  # teardown must go on, even after Ctrl-C
                errors.append(f"{what}: {type(exc).__name__}: {exc}")
                self._log(f"teardown: {what} failed: {exc!r}")
        return errors


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into KeyboardInterrupt while inside; restore after."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
