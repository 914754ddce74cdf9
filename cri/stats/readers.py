"""Reading CPU, memory and process counters from cgroup files, v1 and v2.

What each number is (the kubelet and cAdvisor define them this way):

- CPU usage: ``cpuacct.usage`` (ns, v1) or ``cpu.stat`` ``usage_usec`` (v2, times 1000).
- memory usage: ``memory.usage_in_bytes`` (v1) or ``memory.current`` (v2).
- working set: usage minus inactive file pages (``total_inactive_file`` on v1, whose
  ``total_*`` keys include descendants; ``inactive_file`` on v2, hierarchical already),
  floored at 0.
- RSS: ``total_rss`` (v1) or ``anon`` (v2); page faults: ``[total_]pgfault``/``pgmajfault``.
- limit: ``memory.limit_in_bytes`` (v1, "unlimited" is a value near 2^63) or ``memory.max``
  (v2, "max"); available = limit minus working set, unknown when unlimited.
- swap: ``total_swap`` with the ``memory.memsw.*`` limit (v1, only when swap is accounted) or
  ``memory.swap.current``/``memory.swap.max`` (v2).
- processes: ``pids.current``.

Readers raise OSError when a file is missing or the cgroup is gone; callers decide what a
vanished cgroup means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cri.stats.cgroupfs import CgroupDirs

# v1 reports "no limit" as PAGE_COUNTER_MAX pages (just under 2^63); anything this large is
# no limit (cAdvisor uses the same cut-off).
V1_UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySample:
    usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int | None  # None: no limit
    swap_usage: int | None = None  # None: swap is not accounted
    swap_limit: int | None = None  # swap alone (not memory+swap); None: no limit or unknown

    @property
    def available(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.working_set, 0)

    @property
    def swap_available(self) -> int | None:
        if self.swap_limit is None or self.swap_usage is None:
            return None
        return max(self.swap_limit - self.swap_usage, 0)


def read_text(path: Path) -> str:
    """One small kernel file, with as few syscalls as Python allows (this runs ~1000x a call)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:  # seq files may need more than one read
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def parse_flat(text: str) -> dict[str, int]:
    """A flat-keyed file (``memory.stat``, ``cpu.stat``): ``key value`` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_v1_limit(text: str) -> int | None:
    value = int(text)
    return None if value >= V1_UNLIMITED else value


def parse_v2_limit(text: str) -> int | None:
    text = text.strip()
    return None if text == "max" else int(text)


def _need(dirs: CgroupDirs, controller: str) -> Path:
    directory = dirs.dir(controller)
    if directory is None:
        raise FileNotFoundError(f"the {controller} cgroup controller is not mounted")
    return directory


def read_cpu_usage(dirs: CgroupDirs) -> int:
    """Total CPU time used, in nanoseconds."""
    if dirs.v2:
        return parse_flat(read_text(_need(dirs, "cpu") / "cpu.stat"))["usage_usec"] * 1000
    return int(read_text(_need(dirs, "cpuacct") / "cpuacct.usage"))


def read_memory(dirs: CgroupDirs) -> MemorySample:
    return _memory_v2(_need(dirs, "memory")) if dirs.v2 else _memory_v1(_need(dirs, "memory"))


def _memory_v1(d: Path) -> MemorySample:
    usage = int(read_text(d / "memory.usage_in_bytes"))
    stat = parse_flat(read_text(d / "memory.stat"))
    limit = parse_v1_limit(read_text(d / "memory.limit_in_bytes"))
    return MemorySample(
        usage=usage,
        working_set=max(usage - stat.get("total_inactive_file", 0), 0),
        rss=stat.get("total_rss", 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
        limit=limit,
        swap_usage=stat.get("total_swap"),  # present only when swap is accounted
        swap_limit=_v1_swap_limit(d, limit) if "total_swap" in stat else None,
    )


def _v1_swap_limit(d: Path, limit: int | None) -> int | None:
    """v1 limits memory+swap together; swap alone is the difference when both are set."""
    try:
        both = parse_v1_limit(read_text(d / "memory.memsw.limit_in_bytes"))
    except OSError:
        return None
    return None if both is None or limit is None else max(both - limit, 0)


def _memory_v2(d: Path) -> MemorySample:
    usage = int(read_text(d / "memory.current"))
    stat = parse_flat(read_text(d / "memory.stat"))
    try:
        swap_usage: int | None = int(read_text(d / "memory.swap.current"))
        swap_limit = parse_v2_limit(read_text(d / "memory.swap.max"))
    except OSError:  # swap accounting off (or the root cgroup, which has no such files)
        swap_usage = swap_limit = None
    return MemorySample(
        usage=usage,
        working_set=max(usage - stat.get("inactive_file", 0), 0),
        rss=stat.get("anon", 0),
        page_faults=stat.get("pgfault", 0),
        major_page_faults=stat.get("pgmajfault", 0),
        limit=parse_v2_limit(read_text(d / "memory.max")),
        swap_usage=swap_usage,
        swap_limit=swap_limit,
    )


def read_process_count(dirs: CgroupDirs) -> int:
    """Processes in the cgroup and below: ``pids.current``, else the cgroup.procs lines."""
    pids = dirs.dir("pids")
    if pids is not None:
        try:
            return int(read_text(pids / "pids.current"))
        except FileNotFoundError:  # the v2 root has no pids.current
            pass
    return count_lines(_need(dirs, "memory") / "cgroup.procs")


def count_lines(path: Path) -> int:
    return len(read_text(path).split())
