"""Fake cgroup trees (v1 hybrid and v2) in a temporary directory, with the mountinfo and
/proc/<pid> files that point at them: what the stats code reads, minus the kernel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")

V1_MEMORY_STAT = {
    "cache": 4096,
    "rss": 1000,
    "mapped_file": 500,
    "swap": 0,
    "pgfault": 10,
    "pgmajfault": 1,
    "inactive_file": 300,
    "active_file": 200,
    "total_cache": 8192,
    "total_rss": 2_000_000,
    "total_mapped_file": 4096,
    "total_swap": 4096,
    "total_pgfault": 1234,
    "total_pgmajfault": 5,
    "total_inactive_file": 1_000_000,
    "total_active_file": 70_000,
}

V2_MEMORY_STAT = {
    "anon": 3_000_000,
    "file": 9000,
    "kernel": 777,
    "file_mapped": 600,
    "inactive_file": 2_000_000,
    "active_file": 4000,
    "pgfault": 4321,
    "pgmajfault": 9,
}


def flat(values: Mapping[str, int]) -> str:
    return "".join(f"{k} {v}\n" for k, v in values.items())


def write(directory: Path, files: Mapping[str, str | int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (directory / name).write_text(f"{value}\n" if isinstance(value, int) else value)


@dataclass
class V1Host:
    """A hybrid host: one v1 hierarchy per controller under ``root``, an empty cgroup2."""

    root: Path

    @property
    def mountinfo(self) -> str:
        lines = ["22 1 0:21 / /proc rw - proc proc rw"]
        for i, c in enumerate(V1_CONTROLLERS):
            lines.append(f"{30 + i} 1 0:{40 + i} / {self.root / c} rw - cgroup cgroup rw,{c}")
        lines.append(
            f"39 1 0:49 / {self.root / 'systemd'} rw - cgroup cgroup rw,xattr,name=systemd"
        )
        lines.append(f"40 1 0:50 / {self.root / 'unified'} rw - cgroup2 cgroup2 rw")
        return "\n".join(lines) + "\n"

    def proc_cgroup(self, path: str) -> str:
        lines = [f"{i + 1}:{c}:{path}" for i, c in enumerate(V1_CONTROLLERS)]
        return "\n".join([*lines, "9:name=systemd:/", "0::/"]) + "\n"

    def cgroup(
        self,
        path: str,
        *,
        cpu_ns: int = 5_000_000_000,
        usage: int = 3_000_000,
        limit: int = 9223372036854771712,
        memsw_limit: int | None = 9223372036854771712,
        pids: int = 3,
        stat: Mapping[str, int] = V1_MEMORY_STAT,
    ) -> None:
        rel = path.strip("/")
        write(
            self.root / "cpuacct" / rel,
            {
                "cpuacct.usage": cpu_ns,
                "cpuacct.usage_user": cpu_ns * 3 // 5,
                "cpuacct.usage_sys": cpu_ns * 2 // 5,
                "cpuacct.stat": "user 300\nsystem 200\n",
            },
        )
        write(
            self.root / "cpu" / rel,
            {
                "cpu.stat": flat(
                    {"nr_periods": 50, "nr_throttled": 7, "throttled_time": 3_500_000_000}
                ),
                "cpu.cfs_period_us": 100000,
                "cpu.cfs_quota_us": 20000,
                "cpu.shares": 512,
            },
        )
        memory = {
            "memory.usage_in_bytes": usage,
            "memory.max_usage_in_bytes": usage * 2,
            "memory.failcnt": 4,
            "memory.limit_in_bytes": limit,
            "memory.soft_limit_in_bytes": 9223372036854771712,
            "memory.stat": flat(stat),
            "memory.kmem.usage_in_bytes": 65536,
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "cgroup.procs": "",
            "tasks": "",
        }
        if memsw_limit is not None:
            memory["memory.memsw.limit_in_bytes"] = memsw_limit
        write(self.root / "memory" / rel, memory)
        write(
            self.root / "pids" / rel,
            {"pids.current": pids, "pids.max": "max\n", "cgroup.procs": "", "tasks": ""},
        )
        write(
            self.root / "blkio" / rel,
            {
                "blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\n254:0 Write 8192\n"
                "254:0 Sync 0\n254:0 Async 12288\n254:0 Total 12288\nTotal 12288\n",
                "blkio.throttle.io_serviced_recursive": "254:0 Read 1\n254:0 Write 2\nTotal 3\n",
            },
        )


@dataclass
class V2Host:
    """A pure cgroup v2 host: the unified hierarchy at ``root``."""

    root: Path

    @property
    def mountinfo(self) -> str:
        return (
            "22 1 0:21 / /proc rw - proc proc rw\n"
            f"35 1 0:30 / {self.root} rw - cgroup2 cgroup2 rw,nsdelegate\n"
        )

    @staticmethod
    def proc_cgroup(path: str) -> str:
        return f"0::{path}\n"

    def cgroup(
        self,
        path: str,
        *,
        usage_usec: int = 4_000_000,
        current: int = 5_000_000,
        limit: str = "max",
        swap: tuple[int, str] | None = (8192, "max"),
        pids: int = 2,
        stat: Mapping[str, int] = V2_MEMORY_STAT,
    ) -> None:
        files: dict[str, str | int] = {
            "cpu.stat": flat(
                {
                    "usage_usec": usage_usec,
                    "user_usec": usage_usec // 2,
                    "system_usec": usage_usec // 2,
                    "nr_periods": 10,
                    "nr_throttled": 1,
                    "throttled_usec": 2_000_000,
                }
            ),
            "cpu.max": "max 100000\n",
            "cpu.weight": 100,
            "memory.current": current,
            "memory.peak": current + 1,
            "memory.max": f"{limit}\n",
            "memory.low": 0,
            "memory.stat": flat(stat),
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
            "pids.current": pids,
            "pids.max": 100,
            "cgroup.procs": "",
            "cgroup.threads": "",
            "io.stat": "254:0 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n",
            "cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
        }
        if swap is not None:
            files["memory.swap.current"] = swap[0]
            files["memory.swap.max"] = f"{swap[1]}\n"
        write(self.root / path.strip("/"), files)
