"""Was the container OOM-killed? Its memory cgroup's `oom_kill` counter says.

While the container runs, `/proc/<pid>/cgroup` names its cgroup: the line of
the v1 `memory` controller, else the v2 `0::` line. /proc/self/mountinfo
tells where that hierarchy is mounted. When the init has exited, and before
`runc delete` removes the cgroup, the counter is read from
`memory.oom_control` (v1) or `memory.events` (v2): `oom_kill N`, N > 0 means
the kernel OOM killer fired inside the container. Hybrid hosts (v1
controllers plus an empty cgroup2) use the v1 memory hierarchy.

With the systemd cgroup driver the container's cgroup is a transient scope,
and systemd removes it as soon as its last process has exited — possibly
before the shim has reaped the init. So on v2 :class:`Watch` keeps the
counter while the container runs: the kernel signals a change of
`memory.events` to poll() as EPOLLPRI, and the shim re-reads it then.
"""

from __future__ import annotations

import os
import re
import select
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupPaths:
    """A process's memory cgroup path in v1 (memory controller) and v2, if any."""

    v1_memory: str | None
    v2: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MountPoint:
    root: str
    path: str


def parse_proc_cgroup(text: str) -> CgroupPaths:
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if parts[0] == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return CgroupPaths(v1_memory=v1, v2=v2)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> tuple[MountPoint | None, MountPoint | None]:
    """(v1 memory hierarchy mount, cgroup2 mount) from mountinfo text."""
    v1 = v2 = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = MountPoint(root=_unescape(fields[3]), path=_unescape(fields[4]))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = point
        elif tail[0] == "cgroup" and "memory" in tail[2].split(",") and v1 is None:
            v1 = point
    return v1, v2


def _join(mount: MountPoint, cgroup: str) -> Path | None:
    root = mount.root.rstrip("/")
    if root and not (cgroup == root or cgroup.startswith(root + "/")):
        return None
    return Path(mount.path + cgroup[len(root) :])


def resolve(paths: CgroupPaths, mountinfo: str) -> Path | None:
    """The directory of the memory cgroup, or None when it cannot be found."""
    return _resolve_in(paths, parse_mountinfo(mountinfo))


def _resolve_in(
    paths: CgroupPaths, mounts: tuple[MountPoint | None, MountPoint | None]
) -> Path | None:
    v1_mount, v2_mount = mounts
    if paths.v1_memory is not None and v1_mount is not None:
        return _join(v1_mount, paths.v1_memory)
    if paths.v2 is not None and v2_mount is not None:
        found = _join(v2_mount, paths.v2)
        if found is not None and (found / "memory.events").exists():
            return found
    return None


# The cgroup mounts as last read. The template reads them once (warm), so its
# shims and their workers start with them: mountinfo grows with every
# container's mounts, and cgroup hierarchies do not move.
_mounts: tuple[MountPoint | None, MountPoint | None] | None = None


def cgroup_mounts(*, refresh: bool = False) -> tuple[MountPoint | None, MountPoint | None]:
    """(v1 memory hierarchy mount, cgroup2 mount) of this process, read once."""
    global _mounts
    if _mounts is None or refresh:
        try:
            _mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        except OSError:
            return None, None
    return _mounts


def memory_cgroup_of(pid: int) -> Path | None:
    """The memory cgroup directory of a live process (None if gone or unknown)."""
    try:
        paths = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None
    found = _resolve_in(paths, cgroup_mounts())
    if found is None or not found.is_dir():  # the mounts changed since they were read
        found = _resolve_in(paths, cgroup_mounts(refresh=True))
    return found


def parse_oom_kill(text: str) -> int | None:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


def oom_kill_count(cgroup_dir: str | Path) -> int | None:
    """The cgroup's oom_kill counter, or None if it cannot be read."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            fd = os.open(f"{cgroup_dir}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            return parse_oom_kill(os.read(fd, 4096).decode())
        except (OSError, ValueError):
            continue
        finally:
            os.close(fd)
    return None


def verdict(
    count: int, *, gone: bool, sigkilled: bool, parent: int | None, parent_seen: int | None
) -> int:
    """The container's oom_kill count at exit: its own (``count``, last read), or, when its
    cgroup was gone and SIGKILL ended it, one more if the parent counted a kill since."""
    if gone and sigkilled and parent is not None and parent_seen is not None:
        return count + (parent > parent_seen)
    return count


class Watch:
    """The oom_kill counter of a v2 cgroup, kept while it exists (see module doc).

    When the cgroup is gone before the shim has read it (systemd removes an empty scope at
    once, and a busy host can delay the shim more than systemd), the parent's counter decides:
    it counts its children's OOM kills, so an increase since the shim last saw its own cgroup
    (re-read on each of the cgroup's memory events and before each signal the shim sends) while
    the init died of SIGKILL is this container's. Only another container of the same parent
    OOM-killed in that same short window could be mistaken for it.

    The owner polls `fileno()` for reading and calls `changed()` when it is readable.
    """

    def __init__(self, cgroup_dir: str | Path) -> None:
        cgroup = os.fspath(cgroup_dir)  # plain strings: the keeper runs this (see shim.template)
        self._fd: int | None = os.open(f"{cgroup}/memory.events", os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.epoll(1)
        try:
            self._poll.register(self._fd, select.EPOLLPRI | select.EPOLLET)
        except OSError:  # not a kernfs file (EPERM for plain files)
            self._poll.close()
            os.close(self._fd)
            raise
        try:
            self._parent: int | None = os.open(
                f"{cgroup.rpartition('/')[0]}/memory.events", os.O_RDONLY | os.O_CLOEXEC
            )
        except OSError:
            self._parent = None
        self.count = 0
        self._parent_seen: int | None = None
        self.refresh()

    @classmethod
    def of(cls, cgroup_dir: str | Path | None) -> Watch | None:
        """A watch of a v2 cgroup; None on v1 (whose cgroup lasts until `runc delete`)."""
        if cgroup_dir is None:
            return None
        try:
            return cls(cgroup_dir)
        except OSError:
            return None

    @staticmethod
    def _read(fd: int | None) -> int | None:
        if fd is None:
            return None
        try:
            return parse_oom_kill(os.pread(fd, 4096, 0).decode())
        except (OSError, ValueError):  # the cgroup is gone
            return None

    def refresh(self) -> bool:
        """Read the counter (the parent's first); False once the cgroup is gone."""
        parent = self._read(self._parent)
        own = self._read(self._fd)
        if own is None:
            return False
        self.count = max(self.count, own)
        self._parent_seen = parent
        return True

    def fileno(self) -> int | None:
        """What to poll for reading (an epoll set that holds memory.events); None once the
        watch stopped (the cgroup is gone, or `final`/`close` was called)."""
        return None if self._fd is None else self._poll.fileno()

    def changed(self) -> bool:
        """memory.events changed: re-read it. False once the cgroup is gone (stop polling)."""
        try:
            self._poll.poll(0)
        except OSError:  # (not contextlib.suppress: the keeper runs this)
            pass
        if self._fd is not None and not self.refresh():
            self._stop_polling()
        return self._fd is not None

    def final(self, *, sigkilled: bool) -> int:
        """The counter at the init's exit (see class doc); stops watching."""
        parent = self._read(self._parent)
        gone = self._fd is None or not self.refresh()
        found = verdict(
            self.count, gone=gone, sigkilled=sigkilled, parent=parent, parent_seen=self._parent_seen
        )
        self.close()
        return found

    def _stop_polling(self) -> None:
        if self._fd is None:
            return
        self._poll.close()
        os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        self._stop_polling()
        if self._parent is not None:
            os.close(self._parent)
            self._parent = None
