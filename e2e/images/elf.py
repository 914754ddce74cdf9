"""The shared libraries a dynamic binary loads, found with `ldd`, for copying into an image.

Libraries come from this host, which is the same Debian release the packages were built for;
each is placed in the image at the path the loader found it under, so the image's loader
finds it the same way without an /etc/ld.so.cache.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_ARROW = re.compile(r"^\s*(\S+)\s+=>\s+(.+?)\s+\(0x[0-9a-f]+\)\s*$")
_LOADER = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_MISSING = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


class LibraryError(Exception):
    """A binary needs a library this host does not have."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedLib:
    """One library: where the image gets it (`path`) and the host file with its bytes."""

    path: str
    host_file: Path


def parse_ldd(output: str, binary: str = "") -> list[SharedLib]:
    """The libraries named in `ldd` output (the vDSO has no file and is skipped)."""
    libs: list[SharedLib] = []
    for line in output.splitlines():
        if missing := _MISSING.match(line):
            raise LibraryError(f"{binary or 'binary'} needs {missing.group(1)}: not on this host")
        if arrow := _ARROW.match(line):
            libs.append(_lib(arrow.group(2)))
        elif loader := _LOADER.match(line):
            libs.append(_lib(loader.group(1)))
    return libs


def _lib(path: str) -> SharedLib:
    return SharedLib(path=path.lstrip("/"), host_file=Path(path).resolve())


def shared_libraries(binary: Path, env: Mapping[str, str] | None = None) -> list[SharedLib]:
    """The libraries `binary` loads; [] for a static binary."""
    done = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        if "not a dynamic executable" in done.stdout + done.stderr:
            return []
        raise LibraryError(f"ldd {binary} failed: {done.stderr.strip()}")
    return parse_ldd(done.stdout, str(binary))


def library_closure(binaries: Iterable[Path]) -> list[SharedLib]:
    """The union of every binary's libraries, one entry per image path, sorted."""
    by_path: dict[str, SharedLib] = {}
    for binary in binaries:
        by_path.update((lib.path, lib) for lib in shared_libraries(binary))
    return [by_path[p] for p in sorted(by_path)]
