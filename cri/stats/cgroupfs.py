"""Finding a process's cgroup directories, on cgroup v2 and on v1/hybrid hosts.

A process's cgroups are listed in ``/proc/<pid>/cgroup``; each line names a hierarchy and a
path inside it (relative to the root of the reader's cgroup namespace)::

    4:memory:/process_api/6f63/berth/<id>     (v1: one line per hierarchy)
    2:cpu,cpuacct:/berth/<id>                 (v1: co-mounted controllers)
    0::/berth/<id>                            (v2: the unified hierarchy)

Where a hierarchy is mounted comes from ``/proc/self/mountinfo`` (fstype ``cgroup`` with the
controllers in the super options, or ``cgroup2``). A mount whose root is not ``/`` (a bind of a
sub-tree, as inside a container) shows paths below that root only.

On a hybrid host the v2 hierarchy carries no controllers, so every controller comes from v1;
only a host where cgroup2 holds the controllers (``cgroup.controllers`` at its mount root is
non-empty and no v1 hierarchy has them) is treated as v2.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

UNIFIED = ""  # the key of the v2 hierarchy in a proc-cgroup mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupMount:
    """One mounted cgroup hierarchy: its controllers (empty for v2) and where it is."""

    controllers: frozenset[str]
    root: str  # the path inside the hierarchy that the mount shows at `mountpoint`
    mountpoint: Path
    v2: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupDirs:
    """Where one cgroup's files are: the v2 directory, or one directory per v1 controller."""

    unified: Path | None = None
    controllers: Mapping[str, Path] = field(default_factory=dict)

    @property
    def v2(self) -> bool:
        return self.unified is not None

    def dir(self, controller: str) -> Path | None:
        """The directory holding ``controller``'s files, or None if it is not mounted."""
        if self.unified is not None:
            return self.unified
        return self.controllers.get(controller)

    def parent(self) -> CgroupDirs:
        """The enclosing cgroup (a pod's, for a container) in every hierarchy."""
        if self.unified is not None:
            return CgroupDirs(unified=self.unified.parent)
        return CgroupDirs(controllers={c: d.parent for c, d in self.controllers.items()})

    def child(self, relative: str) -> CgroupDirs:
        """The cgroup at ``relative`` below this one in every hierarchy."""
        parts = [p for p in relative.split("/") if p]
        if self.unified is not None:
            return CgroupDirs(unified=self.unified.joinpath(*parts))
        return CgroupDirs(controllers={c: d.joinpath(*parts) for c, d in self.controllers.items()})


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 line's key is ``UNIFIED``.

    Co-mounted controllers ("cpu,cpuacct") each get the path; named hierarchies
    ("name=systemd") are kept under their name.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[UNIFIED] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts listed in a mountinfo text, in order."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        root, mountpoint = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup2":
            mounts.append(
                CgroupMount(controllers=frozenset(), root=root, mountpoint=mountpoint, v2=True)
            )
        elif fstype == "cgroup":
            names = frozenset(o for o in options if _is_hierarchy_name(o))
            mounts.append(CgroupMount(controllers=names, root=root, mountpoint=mountpoint))
    return mounts


# Super options of a v1 cgroup mount that are flags, not controller names.
_FLAGS = frozenset({"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"})


def _is_hierarchy_name(option: str) -> bool:
    """A controller ("memory") or a named hierarchy ("name=systemd"), not a flag or setting."""
    return option.startswith("name=") or ("=" not in option and option not in _FLAGS)


def _below(root: str, path: str) -> str | None:
    """``path`` relative to the mount root ``root``, or None when the mount does not show it."""
    root, path = posixpath.normpath(root), posixpath.normpath(path)
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return None


class CgroupLayout:
    """The cgroup mounts of this host, and how to turn proc-cgroup paths into directories."""

    def __init__(self, mounts: list[CgroupMount], *, v2_controllers: bool) -> None:
        self._v1 = [m for m in mounts if not m.v2]
        self._v2 = next((m for m in mounts if m.v2), None)
        # On hybrid hosts the v2 hierarchy has no controllers: everything comes from v1.
        self.v2 = v2_controllers and self._v2 is not None

    @classmethod
    def from_text(cls, mountinfo: str, *, v2_controllers: bool) -> CgroupLayout:
        return cls(parse_mountinfo(mountinfo), v2_controllers=v2_controllers)

    def dirs(self, proc_cgroup: Mapping[str, str]) -> CgroupDirs:
        """The directories of the cgroup described by a parsed ``/proc/<pid>/cgroup``."""
        if self.v2:
            assert self._v2 is not None
            below = _below(self._v2.root, proc_cgroup.get(UNIFIED, "/"))
            return CgroupDirs(unified=None if below is None else self._v2.mountpoint / below)
        found: dict[str, Path] = {}
        for mount in self._v1:
            path = next((proc_cgroup[c] for c in mount.controllers if c in proc_cgroup), None)
            below = None if path is None else _below(mount.root, path)
            if below is None:
                continue
            for controller in mount.controllers:
                found[controller] = mount.mountpoint / below
        return CgroupDirs(controllers=found)

    def at(self, path: str) -> CgroupDirs:
        """The cgroup at the same absolute ``path`` in every hierarchy."""
        if self.v2:
            return self.dirs({UNIFIED: path})
        return self.dirs({c: path for m in self._v1 for c in m.controllers})
