"""A full disk on demand: small tmpfs mounts a test creates and removes itself.

with small_tmpfs(tmp / "root", 32 << 20) as root:
    ...                        # berthd's root dir holds at most 32 MiB
    fill(root, leave=64 << 10) # now at most 64 KiB more fit
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = ".failpoint-filler"


@contextmanager
def small_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes at ``path`` (created if missing), unmounted at the end."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        unmount(path)


def unmount(path: Path, timeout: float = 10.0) -> None:
    """umount, retrying while busy (a process may still be letting go); lazily at the end."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if done.returncode == 0 or not os.path.ismount(path):
            return
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(path)], check=True)
            raise RuntimeError(f"{path} stayed busy, unmounted lazily: {done.stderr.strip()}")
        time.sleep(0.1)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path, leave: int = 0) -> Path:
    """Write a filler file until at most ``leave`` bytes are free on ``path``'s filesystem."""
    filler = path / FILLER
    chunk = b"\0" * (64 << 10)
    with filler.open("ab") as f:
        while free_bytes(path) > leave:
            want = min(len(chunk), free_bytes(path) - leave)
            try:
                f.write(chunk[: max(want, 1)])
                f.flush()
            except OSError:
                break
    return filler


def unfill(path: Path) -> None:
    (path / FILLER).unlink(missing_ok=True)
