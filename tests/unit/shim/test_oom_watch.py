"""shim.oom.Watch outside a cgroup: what it does where it cannot watch. (On a cgroup v2 host
the OOM test of tests/integration/cri/test_containers_e2e.py runs it for real.)"""

from __future__ import annotations

import os
from pathlib import Path

from shim import oom


async def test_no_watch_without_a_cgroup_or_memory_events(tmp_path: Path) -> None:
    assert oom.Watch.of(None) is None
    assert oom.Watch.of(tmp_path) is None  # a v1 memory cgroup has no memory.events


async def test_a_plain_file_cannot_be_watched_and_nothing_leaks(tmp_path: Path) -> None:
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    before = len(os.listdir("/proc/self/fd"))
    assert oom.Watch.of(tmp_path) is None  # epoll refuses regular files
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_vanished_cgroup_is_judged_by_its_parents_counter() -> None:
    # Read in time: the container's own counter.
    assert oom.verdict(1, gone=False, sigkilled=True, parent=9, parent_seen=3) == 1
    assert oom.verdict(0, gone=False, sigkilled=True, parent=9, parent_seen=3) == 0
    # Gone (systemd removed the scope first): the parent counted a kill since -> ours.
    assert oom.verdict(0, gone=True, sigkilled=True, parent=4, parent_seen=3) == 1
    # ... but not if SIGKILL did not end it, or the parent counted nothing new.
    assert oom.verdict(0, gone=True, sigkilled=False, parent=4, parent_seen=3) == 0
    assert oom.verdict(0, gone=True, sigkilled=True, parent=3, parent_seen=3) == 0
    assert oom.verdict(0, gone=True, sigkilled=True, parent=None, parent_seen=3) == 0
