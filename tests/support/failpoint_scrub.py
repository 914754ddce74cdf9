"""Last resort after a test whose berthd could not clean up (it crashed, or cannot start):
stop what berth runs from a work dir, kill the processes left in the test's container cgroups,
unmount what is mounted under the work dir. Touches nothing else. Everything it had to do is
returned: each item is something berthd leaked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Final

from tests.support import cgroup_view as cg
from tests.support.failpoint_node import cgroup_bases, mounts_under

# What berth runs: berthd, shims (and their template), the OCI runtime.
BERTH_PROCESSES: Final = ("cri.daemon", "shim.main", "runc")


def scrub(
    workdir: Path, cgroup_parent: str, *, keep: Collection[Path] = (), spare: Collection[int] = ()
) -> list[str]:
    """Clean up under ``workdir`` and ``cgroup_parent``; ``keep``: mounts the test made itself
    (a tmpfs as root); ``spare``: pids to leave alone."""
    done = []
    for pid in processes_mentioning(str(workdir)):
        if pid not in spare:
            done.append(f"killed leftover process {pid} ({cmdline(pid)[:80]})")
            kill(pid)
    for pid in cgroup_processes(cgroup_parent):
        done.append(f"killed leftover container process {pid} ({cmdline(pid)[:80]})")
        kill(pid)
    kept = {str(k) for k in keep}
    for point in sorted(mounts_under(workdir), reverse=True):
        if point not in kept:
            done.append(f"unmounted leftover {point}")
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return done


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        command = cmdline(int(entry)) if entry.isdigit() else ""
        if text in command and any(name in command for name in BERTH_PROCESSES):
            found.append(int(entry))
    return found


def cgroup_processes(parent: str) -> list[int]:
    pids: set[int] = set()
    for top in cg.parent_dirs(parent, cgroup_bases()):
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in procs.read_text().split()}
    return sorted(pids)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
