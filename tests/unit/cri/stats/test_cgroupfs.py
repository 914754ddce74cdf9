from __future__ import annotations

from pathlib import Path

from cri.stats.cgroupfs import (
    UNIFIED,
    CgroupDirs,
    CgroupLayout,
    parse_mountinfo,
    parse_proc_cgroup,
)

HYBRID_PROC = """12:pids:/process_api/x/berth/c1
4:memory:/process_api/x/berth/c1
2:cpu,cpuacct:/berth/c1
9:name=systemd:/
0::/
"""

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_parse_proc_cgroup_splits_co_mounted_controllers() -> None:
    paths = parse_proc_cgroup(HYBRID_PROC)
    assert paths["cpu"] == paths["cpuacct"] == "/berth/c1"
    assert paths["memory"] == "/process_api/x/berth/c1"
    assert paths["name=systemd"] == "/"
    assert paths[UNIFIED] == "/"


def test_parse_mountinfo_finds_v1_and_v2_mounts() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [(sorted(m.controllers), m.v2) for m in mounts] == [
        (["cpu", "cpuacct"], False),
        (["memory"], False),
        (["pids"], False),
        (["name=systemd"], False),  # "xattr" is a flag, not a controller
        ([], True),
    ]


def test_parse_mountinfo_unescapes_paths() -> None:
    text = r"35 31 0:32 /sub\040dir /mnt/a\040b rw - cgroup cgroup rw,memory" + "\n"
    [mount] = parse_mountinfo(text)
    assert (mount.root, mount.mountpoint) == ("/sub dir", Path("/mnt/a b"))


def test_hybrid_layout_maps_each_controller_to_its_hierarchy() -> None:
    layout = CgroupLayout.from_text(MOUNTINFO, v2_controllers=False)
    dirs = layout.dirs(parse_proc_cgroup(HYBRID_PROC))
    assert not dirs.v2
    assert dirs.dir("cpuacct") == Path("/sys/fs/cgroup/cpu,cpuacct/berth/c1")
    assert dirs.dir("memory") == Path("/sys/fs/cgroup/memory/process_api/x/berth/c1")
    assert dirs.dir("pids") == Path("/sys/fs/cgroup/pids/process_api/x/berth/c1")
    assert dirs.dir("io") is None
    assert dirs.parent().dir("memory") == Path("/sys/fs/cgroup/memory/process_api/x/berth")


def test_v2_layout_reads_the_unified_line() -> None:
    text = "35 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = CgroupLayout.from_text(text, v2_controllers=True)
    dirs = layout.dirs(parse_proc_cgroup("0::/kubepods/pod1/c1\n"))
    assert dirs.v2
    assert dirs.dir("memory") == dirs.dir("cpu") == Path("/sys/fs/cgroup/kubepods/pod1/c1")
    assert dirs.parent() == CgroupDirs(unified=Path("/sys/fs/cgroup/kubepods/pod1"))


def test_mount_of_a_subtree_shows_only_paths_below_its_root() -> None:
    text = "35 1 0:32 /kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    layout = CgroupLayout.from_text(text, v2_controllers=False)
    inside = layout.dirs({"memory": "/kubepods/pod1"})
    assert inside.dir("memory") == Path("/sys/fs/cgroup/memory/pod1")
    assert layout.dirs({"memory": "/elsewhere"}).dir("memory") is None


def test_at_and_child_build_paths_in_every_hierarchy() -> None:
    layout = CgroupLayout.from_text(MOUNTINFO, v2_controllers=False)
    dirs = layout.at("/kubepods/pod1")
    assert dirs.dir("cpu") == Path("/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1")
    assert dirs.dir("memory") == Path("/sys/fs/cgroup/memory/kubepods/pod1")
    assert dirs.child("berth/c2").dir("pids") == Path("/sys/fs/cgroup/pids/kubepods/pod1/berth/c2")
