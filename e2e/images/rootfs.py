"""Root filesystems for the critest stand-in images, as oci_builder entries.

The base is Debian's dynamic busybox (its shell execs applets from PATH, which the
masked-path spec relies on) with every applet as a hard link, the host's libc for it, users
and groups like the upstream e2e busybox, and the few tools Debian's busybox lacks (`ipcs`
from util-linux, `pgrep` from procps) with their libraries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from e2e.images.elf import SharedLib, library_closure
from tests.support.oci_builder import Entry, busybox_applets, directory, file

PASSWD: Final = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "bin:x:2:2:bin:/bin:/bin/false\n"
    "sys:x:3:3:sys:/dev:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP: Final = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nwww-data:x:33:\nnogroup:x:65534:\n"
BASE_DIRS: Final = (
    "bin",
    "dev",
    "etc",
    "home",
    "proc",
    "run",
    "sys",
    "usr",
    "usr/bin",
    "usr/sbin",
    "var",
    "var/run",
    "var/www",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostTool:
    """A host binary copied into the image (with its libraries) at `path`."""

    path: str
    host_file: Path


HOST_TOOLS: Final = (
    HostTool(path="usr/bin/ipcs", host_file=Path("/usr/bin/ipcs")),
    HostTool(path="usr/bin/pgrep", host_file=Path("/usr/bin/pgrep")),
)


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` with a directory entry inserted before the first use of each missing parent."""
    seen: set[str] = set()
    out: list[Entry] = []
    for entry in entries:
        for parent in reversed(PurePosixPath(entry.path).parents[:-1]):
            if str(parent) not in seen:
                seen.add(str(parent))
                out.append(directory(str(parent)))
        if entry.kind == "dir" and entry.path in seen:
            continue
        seen.add(entry.path)
        out.append(entry)
    return out


def library_entries(libs: Iterable[SharedLib], skip: Iterable[str] = ()) -> list[Entry]:
    """One regular file per library (symlinks resolved), except paths in `skip`."""
    skipped = set(skip)
    return [
        file(lib.path, lib.host_file.read_bytes(), mode=0o755)
        for lib in libs
        if lib.path not in skipped
    ]


def busybox_entries(busybox: Path, tools: Sequence[HostTool] = HOST_TOOLS) -> list[Entry]:
    """The base root filesystem (see the module docstring)."""
    for tool in tools:
        if not tool.host_file.exists():
            raise FileNotFoundError(f"{tool.host_file} is needed for the busybox image")
    entries = [directory(p) for p in BASE_DIRS]
    entries += [directory("root", mode=0o700), directory("tmp", mode=0o1777)]
    entries.append(file("bin/busybox", busybox.read_bytes(), mode=0o755))
    entries += [_applet_link(name) for name in busybox_applets(busybox)]
    entries += [file(t.path, t.host_file.read_bytes(), mode=0o755) for t in tools]
    entries += [file("etc/passwd", PASSWD.encode()), file("etc/group", GROUP.encode())]
    entries += library_entries(base_libraries(busybox, tools))
    return with_parents(entries)


def _applet_link(name: str) -> Entry:
    # A hard link's tar header carries a mode too, and extractors apply it to the shared inode,
    # so it must be the binary's own mode (docker writes it the same way).
    return Entry(path=f"bin/{name}", kind="hardlink", target="bin/busybox", mode=0o755)


def base_libraries(busybox: Path, tools: Sequence[HostTool] = HOST_TOOLS) -> list[SharedLib]:
    return library_closure([busybox, *(t.host_file for t in tools)])


def predefined_group_entries() -> list[Entry]:
    """/etc/passwd and /etc/group with uid 1000 also a member of gid 50000."""
    passwd = PASSWD + "default-user:x:1000:1000:Linux User:/home/default-user:/bin/sh\n"
    group = GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
    return [
        file("etc/passwd", passwd.encode()),
        file("etc/group", group.encode()),
        directory("home/default-user", uid=1000, gid=1000),
    ]
