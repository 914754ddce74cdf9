from __future__ import annotations

from pathlib import Path

from e2e.bench import cleanup

MOUNTINFO = """\
23 1 0:21 / /run rw - ext4 /dev/vda rw
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:50 / /run/bb-1/state/netns rw shared:5 - tmpfs tmpfs rw
51 50 0:4 / /run/bb-1/state/netns/pod\\040a rw - nsfs nsfs rw
52 23 0:51 / /run/bb-10/x rw - overlay overlay rw,lowerdir=/a
"""

SELF_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
"""


def test_mountinfo_unescapes_paths() -> None:
    points = [e.mountpoint for e in cleanup.parse_mountinfo(MOUNTINFO)]
    assert "/run/bb-1/state/netns/pod a" in points


def test_mounts_under_is_deepest_first_and_respects_name_boundaries() -> None:
    assert cleanup.mounts_under(Path("/run/bb-1"), MOUNTINFO) == [
        "/run/bb-1/state/netns/pod a",
        "/run/bb-1/state/netns",
    ]


def test_own_cgroup_dirs_in_every_hierarchy() -> None:
    assert cleanup.own_cgroup_dirs(SELF_CGROUP, MOUNTINFO) == [
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/memory/process_api/abc"),
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_remove_cgroup_tree_removes_leaves_first(tmp_path: Path) -> None:
    (tmp_path / "top/a/b").mkdir(parents=True)
    (tmp_path / "top/c").mkdir()
    assert cleanup.remove_cgroup_tree(tmp_path / "top") == []
    assert not (tmp_path / "top").exists()
    assert cleanup.remove_cgroup_tree(tmp_path / "absent") == []


def test_remove_cgroup_tree_reports_what_stays(tmp_path: Path) -> None:
    (tmp_path / "top/busy").mkdir(parents=True)
    (tmp_path / "top/busy/file").write_text("a live cgroup cannot be removed either")
    failed = cleanup.remove_cgroup_tree(tmp_path / "top")
    assert len(failed) == 2 and "busy" in failed[0]


def test_teardown_runs_in_reverse_once_and_survives_failures() -> None:
    ran: list[str] = []
    logged: list[str] = []
    teardown = cleanup.Teardown(log=logged.append)
    teardown.add("first", lambda: ran.append("first"))

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    teardown.add("broken", broken)
    teardown.add("last", lambda: ran.append("last"))
    errors = teardown.run()
    assert ran == ["last", "broken", "first"]
    assert errors == ["broken: RuntimeError: boom"]
    assert len(logged) == 1
    assert teardown.run() == [] and ran == ["last", "broken", "first"]
