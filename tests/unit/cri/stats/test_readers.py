from __future__ import annotations

from pathlib import Path

import pytest

from cri.stats.cgroupfs import CgroupLayout, parse_proc_cgroup
from cri.stats.readers import (
    CgroupFiles,
    parse_flat,
    parse_v1_limit,
    parse_v2_limit,
    read_cpu_usage,
    read_memory,
    read_process_count,
)
from tests.unit.cri.stats.cgroup_fixtures import V1Host, V2Host


def v1_dirs(host: V1Host, path: str) -> CgroupFiles:
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=False)
    return CgroupFiles.of(layout.dirs(parse_proc_cgroup(host.proc_cgroup(path))))


def test_parsers() -> None:
    assert parse_flat("a 1\nb 22\n") == {"a": 1, "b": 22}
    assert parse_v1_limit("9223372036854771712\n") is None
    assert parse_v1_limit("67108864\n") == 67108864
    assert parse_v2_limit("max\n") is None
    assert parse_v2_limit("1024\n") == 1024
    with pytest.raises(ValueError):
        parse_flat("a 1\nb\n")


def test_v1_memory_from_usage_stat_and_limit(tmp_path: Path) -> None:
    host = V1Host(tmp_path)
    host.cgroup("/berth/c1", usage=3_000_000, limit=64 << 20, memsw_limit=96 << 20)
    mem = read_memory(v1_dirs(host, "/berth/c1"))
    assert mem.usage == 3_000_000
    assert mem.working_set == 3_000_000 - 1_000_000  # total_inactive_file
    assert (mem.rss, mem.page_faults, mem.major_page_faults) == (2_000_000, 1234, 5)
    assert mem.limit == 64 << 20
    assert mem.available == (64 << 20) - 2_000_000
    assert mem.swap_usage == 4096
    assert mem.swap_limit == 32 << 20 and mem.swap_available == (32 << 20) - 4096


def test_v1_unlimited_memory_has_no_available(tmp_path: Path) -> None:
    host = V1Host(tmp_path)
    host.cgroup("/c", memsw_limit=None)
    mem = read_memory(v1_dirs(host, "/c"))
    assert mem.limit is None and mem.available is None
    assert mem.swap_limit is None and mem.swap_available is None


def test_working_set_never_negative(tmp_path: Path) -> None:
    host = V1Host(tmp_path)
    host.cgroup("/c", usage=10)
    assert read_memory(v1_dirs(host, "/c")).working_set == 0


def test_v1_cpu_and_processes(tmp_path: Path) -> None:
    host = V1Host(tmp_path)
    host.cgroup("/c", cpu_ns=123456789, pids=4)
    dirs = v1_dirs(host, "/c")
    assert read_cpu_usage(dirs) == 123456789
    assert read_process_count(dirs) == 4


def test_v2_reads_unified_files(tmp_path: Path) -> None:
    host = V2Host(tmp_path)
    host.cgroup("/kubepods/p/c", usage_usec=4_000_000, current=5_000_000, limit="8000000")
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=True)
    dirs = CgroupFiles.of(layout.dirs(parse_proc_cgroup(host.proc_cgroup("/kubepods/p/c"))))
    assert read_cpu_usage(dirs) == 4_000_000_000
    mem = read_memory(dirs)
    assert (mem.usage, mem.working_set, mem.rss) == (5_000_000, 3_000_000, 3_000_000)
    assert (mem.page_faults, mem.major_page_faults) == (4321, 9)
    assert mem.limit == 8_000_000 and mem.available == 5_000_000
    assert mem.swap_usage == 8192 and mem.swap_limit is None
    assert read_process_count(dirs) == 2


def test_v2_without_swap_accounting(tmp_path: Path) -> None:
    host = V2Host(tmp_path)
    host.cgroup("/c", swap=None)
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=True)
    mem = read_memory(CgroupFiles.of(layout.dirs({"": "/c"})))
    assert mem.swap_usage is None and mem.swap_available is None


def test_vanished_cgroup_raises_oserror(tmp_path: Path) -> None:
    host = V1Host(tmp_path)
    with pytest.raises(OSError):
        read_cpu_usage(v1_dirs(host, "/gone"))


def test_missing_controller_is_file_not_found(tmp_path: Path) -> None:
    layout = CgroupLayout.from_text("", v2_controllers=False)
    with pytest.raises(FileNotFoundError, match="memory cgroup controller"):
        CgroupFiles.of(layout.dirs({}))
