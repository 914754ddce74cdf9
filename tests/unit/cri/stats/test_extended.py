from __future__ import annotations

import os
from pathlib import Path

from cri.stats import cadvisor
from cri.stats.cgroupfs import CgroupLayout, parse_proc_cgroup
from cri.stats.extended import (
    Value,
    cpu_values,
    io_values,
    memory_values,
    parse_blkio,
    parse_io_stat,
    parse_pressure,
    pressure_values,
    process_values,
    spec_values,
    weight_to_shares,
)
from tests.unit.cri.stats.cgroup_fixtures import V1Host, V2Host


def as_dict(values: list[Value]) -> dict[tuple[str, tuple[str, ...]], int]:
    return {(v.family, v.labels): v.value for v in values}


def v1(tmp_path: Path, **kw: int):  # type: ignore[no-untyped-def]
    host = V1Host(tmp_path / "cg")
    host.cgroup("/c", **kw)
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=False)
    return host, layout.dirs(parse_proc_cgroup(host.proc_cgroup("/c")))


def v2(tmp_path: Path):  # type: ignore[no-untyped-def]
    host = V2Host(tmp_path / "cg")
    host.cgroup("/c")
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=True)
    return host, layout.dirs(parse_proc_cgroup(host.proc_cgroup("/c")))


def test_v1_cpu(tmp_path: Path) -> None:
    _, dirs = v1(tmp_path, cpu_ns=5_500_000_000)
    got = as_dict(cpu_values(dirs))
    assert got[("container_cpu_usage_seconds_total", ())] == 5
    assert got[("container_cpu_user_seconds_total", ())] == 3
    assert got[("container_cpu_system_seconds_total", ())] == 2
    assert got[("container_cpu_cfs_periods_total", ())] == 50
    assert got[("container_cpu_cfs_throttled_periods_total", ())] == 7
    assert got[("container_cpu_cfs_throttled_seconds_total", ())] == 3


def test_v1_cpu_falls_back_to_ticks(tmp_path: Path) -> None:
    host, dirs = v1(tmp_path)
    (host.root / "cpuacct/c/cpuacct.usage_user").unlink()
    got = as_dict(cpu_values(dirs))
    assert got[("container_cpu_user_seconds_total", ())] == 3  # 300 ticks at USER_HZ 100


def test_v1_memory(tmp_path: Path) -> None:
    _, dirs = v1(tmp_path, usage=3_000_000)
    got = as_dict(memory_values(dirs))
    assert got[("container_memory_usage_bytes", ())] == 3_000_000
    assert got[("container_memory_max_usage_bytes", ())] == 6_000_000
    assert got[("container_memory_working_set_bytes", ())] == 2_000_000
    assert got[("container_memory_rss", ())] == 2_000_000
    assert got[("container_memory_cache", ())] == 8192
    assert got[("container_memory_kernel_usage", ())] == 65536
    assert got[("container_memory_failures_total", ("pgfault", "container"))] == 10
    assert got[("container_memory_failures_total", ("pgmajfault", "hierarchy"))] == 5
    assert got[("container_oom_events_total", ())] == 2


def test_v2_cpu_memory_spec_pressure_io(tmp_path: Path) -> None:
    _, dirs = v2(tmp_path)
    got = as_dict(cpu_values(dirs) + memory_values(dirs) + spec_values(dirs))
    assert got[("container_cpu_usage_seconds_total", ())] == 4
    assert got[("container_cpu_cfs_throttled_seconds_total", ())] == 2
    assert got[("container_memory_working_set_bytes", ())] == 3_000_000
    assert got[("container_memory_max_usage_bytes", ())] == 5_000_001
    assert got[("container_memory_failcnt", ())] == 3
    assert got[("container_memory_kernel_usage", ())] == 777
    assert got[("container_spec_cpu_shares", ())] == weight_to_shares(100) == 2597
    assert got[("container_spec_memory_limit_bytes", ())] == 0  # max
    assert ("container_spec_cpu_quota", ()) not in got
    pressure = as_dict(pressure_values(dirs))
    assert pressure == {
        ("container_pressure_cpu_stalled_seconds_total", ()): 1,
        ("container_pressure_cpu_waiting_seconds_total", ()): 3,
    }
    io = as_dict(io_values(dirs, sys_dev_block=tmp_path / "no-sys"))
    assert io[("container_fs_reads_bytes_total", ("254:0",))] == 1024
    assert io[("container_blkio_device_usage_total", ("254:0", "254", "0", "Write"))] == 2048


def test_v1_spec_and_io(tmp_path: Path) -> None:
    _, dirs = v1(tmp_path, limit=64 << 20)
    got = as_dict(spec_values(dirs))
    assert got[("container_spec_cpu_quota", ())] == 20000
    assert got[("container_spec_cpu_period", ())] == 100000
    assert got[("container_spec_cpu_shares", ())] == 512
    assert got[("container_spec_memory_limit_bytes", ())] == 64 << 20
    assert got[("container_spec_memory_reservation_limit_bytes", ())] == 0
    sys_block = tmp_path / "sys"
    (sys_block / "254:0").mkdir(parents=True)
    (sys_block / "254:0" / "uevent").write_text("MAJOR=254\nMINOR=0\nDEVNAME=vda\n")
    io = as_dict(io_values(dirs, sys_dev_block=sys_block))
    assert io[("container_fs_writes_bytes_total", ("/dev/vda",))] == 8192
    assert io[("container_fs_writes_total", ("/dev/vda",))] == 2


def test_parsers() -> None:
    assert parse_io_stat("8:0 rbytes=1 wbytes=2 rios=3 wios=4\n") == {
        ("8", "0"): {"rbytes": 1, "wbytes": 2, "rios": 3, "wios": 4}
    }
    assert parse_blkio("8:0 Read 5\n8:0 Write 6\nTotal 11\n") == {
        ("8", "0"): {"Read": 5, "Write": 6}
    }
    assert parse_pressure("some avg10=1.00 total=7\nfull avg10=0 total=2\n") == {
        "some": 7,
        "full": 2,
    }


def test_process_values_count_fds_and_sockets(tmp_path: Path) -> None:
    host, dirs = v1(tmp_path)
    (host.root / "pids/c/cgroup.procs").write_text("10\n11\n")
    (host.root / "memory/c/tasks").write_text("10\n11\n12\n")
    (host.root / "pids/c/tasks").write_text("10\n11\n12\n")
    proc = tmp_path / "proc"
    for pid, targets in (("10", ["/dev/null", "socket:[1]"]), ("11", ["pipe:[2]"])):
        (proc / pid / "fd").mkdir(parents=True)
        for i, target in enumerate(targets):
            os.symlink(target, proc / pid / "fd" / str(i))
    got = as_dict(process_values(dirs, proc))
    assert got[("container_processes", ())] == 2
    assert got[("container_threads", ())] == 3
    assert got[("container_threads_max", ())] == 0
    assert got[("container_file_descriptors", ())] == 3
    assert got[("container_sockets", ())] == 1


def test_every_value_is_described_with_matching_labels(tmp_path: Path) -> None:
    _, d1 = v1(tmp_path / "a")
    _, d2 = v2(tmp_path / "b")
    values = []
    for dirs in (d1, d2):
        values += cpu_values(dirs) + memory_values(dirs) + spec_values(dirs) + io_values(dirs)
    values += pressure_values(d2)
    metrics = cadvisor.to_metrics(("p", "ns", "c", "id", "img"), values, at=1)
    described = {d.name: len(d.label_keys) for d in cadvisor.descriptors(pressure=True)}
    for metric in metrics:
        assert len(metric.label_values) == described[metric.name], metric.name
