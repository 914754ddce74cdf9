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
