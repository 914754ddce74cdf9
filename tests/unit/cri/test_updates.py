from __future__ import annotations

from pathlib import Path

import pytest

from cri import errors, updates
from cri.api.v1 import api_pb2
from cri.stats.cgroupfs import CgroupDirs
from cri.store import ContainerRecord


def res(**kw: object) -> api_pb2.LinuxContainerResources:
    return api_pb2.LinuxContainerResources(**kw)  # type: ignore[arg-type]


def test_merge_keeps_current_values_for_unset_fields() -> None:
    current = res(
        cpu_shares=512,
        cpu_quota=20000,
        cpu_period=100000,
        memory_limit_in_bytes=1 << 26,
        unified={"memory.high": "1M"},
    )
    merged = updates.merge(current, res(cpu_quota=50000, unified={"pids.max": "9"}))
    assert merged.cpu_quota == 50000
    assert (merged.cpu_shares, merged.cpu_period, merged.memory_limit_in_bytes) == (
        512,
        100000,
        1 << 26,
    )
    assert dict(merged.unified) == {"memory.high": "1M", "pids.max": "9"}
    assert current.cpu_quota == 20000  # not modified


def test_merge_replaces_hugepage_limits_when_given() -> None:
    current = res(hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=1)])
    merged = updates.merge(
        current, res(hugepage_limits=[api_pb2.HugepageLimit(page_size="1GB", limit=2)])
    )
    assert [(h.page_size, h.limit) for h in merged.hugepage_limits] == [("1GB", 2)]


def test_status_resources_reports_the_limits_in_effect() -> None:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="c"))
    record = ContainerRecord(
        id="c",
        sandbox_id="p",
        config=config,
        image_id="i",
        image_ref="i",
        image_name="i",
        created_at=1,
        runtime_handler="runc",
    )
    assert updates.status_resources(record) is None
    config.linux.resources.cpu_shares = 2
    status = updates.status_resources(record)
    assert status is not None and status.linux.cpu_shares == 2


def test_pod_limits_add_overhead_to_set_fields() -> None:
    overhead = res(cpu_shares=10, cpu_quota=5, memory_limit_in_bytes=24)
    total = updates.pod_limits(overhead, res(cpu_shares=100, memory_limit_in_bytes=1000))
    assert (total.cpu_shares, total.cpu_quota, total.memory_limit_in_bytes) == (110, 0, 1024)
    assert updates.pod_limits(None, res(cpu_shares=7)).cpu_shares == 7


def v1_pod(tmp_path: Path) -> CgroupDirs:
    cpu, mem = tmp_path / "cpu", tmp_path / "memory"
    cpu.mkdir()
    mem.mkdir()
    (cpu / "cpu.shares").write_text("1024\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return CgroupDirs(controllers={"cpu": cpu, "cpuacct": cpu, "memory": mem})


def test_apply_pod_limits_writes_only_what_differs(tmp_path: Path) -> None:
    dirs = v1_pod(tmp_path)
    limits = res(cpu_shares=1024, cpu_quota=50000, memory_limit_in_bytes=1 << 28)
    written = updates.apply_pod_limits(dirs, limits)
    # shares and period already hold these values
    assert sorted(Path(p).name for p in written) == ["cpu.cfs_quota_us", "memory.limit_in_bytes"]
    assert (tmp_path / "cpu/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "memory/memory.limit_in_bytes").read_text() == str(1 << 28)
    # What a kubelet already applied is left alone.
    assert updates.apply_pod_limits(dirs, limits) == []


def test_apply_pod_limits_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu.weight").write_text("100\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    dirs = CgroupDirs(unified=tmp_path)
    written = updates.apply_pod_limits(
        dirs, res(cpu_shares=1024, cpu_quota=20000, cpu_period=50000)
    )
    assert sorted(Path(p).name for p in written) == ["cpu.max", "cpu.weight"]
    assert (tmp_path / "cpu.max").read_text() == "20000 50000"
    assert (tmp_path / "cpu.weight").read_text() == str(updates.shares_to_weight(1024)) == "39"


def test_refused_write_is_failed_precondition() -> None:
    with pytest.raises(errors.FailedPrecondition, match="cannot set /proc/version to 1"):
        updates._write(Path("/proc/version"), "1")  # refused even for root
