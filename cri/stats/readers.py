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


def read_text(path: Path | str) -> str:
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
    """A flat-keyed file (``memory.stat``, ``cpu.stat``): ``key value`` per line.

    The kernel guarantees the two-field shape, so the text is split in one go (this is on the
    path of every ListContainerStats, for every container).
    """
    tokens = text.split()
    return dict(zip(tokens[::2], map(int, tokens[1::2]), strict=True))


def parse_v1_limit(text: str) -> int | None:
    value = int(text)
    return None if value >= V1_UNLIMITED else value


def parse_v2_limit(text: str) -> int | None:
    text = text.strip()
    return None if text == "max" else int(text)


@dataclass(frozen=True, slots=True)
class Limits:
    """A cgroup's memory limits; they change only when berth updates the container."""

    memory: int | None  # None: no limit
    swap: int | None  # swap alone; None: no limit or swap not accounted


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupFiles:
    """The files one sample reads, joined once as strings (they are read for every container
    on every stats call, and building paths costs as much as reading the small files)."""

    v2: bool
    cpu: str  # cpuacct.usage | cpu.stat
    memory_usage: str  # memory.usage_in_bytes | memory.current
    memory_stat: str
    memory_limit: str  # memory.limit_in_bytes | memory.max
    swap_limit: str  # memory.memsw.limit_in_bytes (memory+swap) | memory.swap.max
    swap_usage: str  # "" (v1 has it in memory.stat) | memory.swap.current
    pids: str  # pids.current, "" without the pids controller
    procs: str  # cgroup.procs, to count processes without pids

    @classmethod
    def of(cls, dirs: CgroupDirs) -> CgroupFiles:
        """FileNotFoundError when the cpu or memory controller is not mounted."""
        mem, pids = str(_need(dirs, "memory")), dirs.dir("pids")
        if dirs.v2:
            return cls(
                v2=True,
                cpu=f"{mem}/cpu.stat",
                memory_usage=f"{mem}/memory.current",
                memory_stat=f"{mem}/memory.stat",
                memory_limit=f"{mem}/memory.max",
                swap_limit=f"{mem}/memory.swap.max",
                swap_usage=f"{mem}/memory.swap.current",
                pids=f"{mem}/pids.current",
                procs=f"{mem}/cgroup.procs",
            )
        return cls(
            v2=False,
            cpu=f"{_need(dirs, 'cpuacct')}/cpuacct.usage",
            memory_usage=f"{mem}/memory.usage_in_bytes",
            memory_stat=f"{mem}/memory.stat",
            memory_limit=f"{mem}/memory.limit_in_bytes",
            swap_limit=f"{mem}/memory.memsw.limit_in_bytes",
            swap_usage="",
            pids="" if pids is None else f"{pids}/pids.current",
            procs=f"{mem}/cgroup.procs",
        )


def _need(dirs: CgroupDirs, controller: str) -> Path:
    directory = dirs.dir(controller)
    if directory is None:
        raise FileNotFoundError(f"the {controller} cgroup controller is not mounted")
    return directory


def read_cpu_usage(files: CgroupFiles) -> int:
    """Total CPU time used, in nanoseconds."""
    if files.v2:
        return parse_flat(read_text(files.cpu))["usage_usec"] * 1000
    return int(read_text(files.cpu))


def read_limits(files: CgroupFiles) -> Limits:
    if files.v2:
        memory = parse_v2_limit(read_text(files.memory_limit))
        try:
            return Limits(memory, parse_v2_limit(read_text(files.swap_limit)))
        except FileNotFoundError:  # swap not accounted (or the root cgroup)
            return Limits(memory, None)
    memory = parse_v1_limit(read_text(files.memory_limit))
    try:
        both = parse_v1_limit(read_text(files.swap_limit))
    except FileNotFoundError:  # swap not accounted
        return Limits(memory, None)
    # v1 limits memory+swap together; swap alone is the difference when both are set.
    return Limits(memory, None if both is None or memory is None else max(both - memory, 0))


def read_memory(files: CgroupFiles, limits: Limits | None = None) -> MemorySample:
    """Usage and faults; ``limits`` as read before by :func:`read_limits` (read if None)."""
    limits = limits or read_limits(files)
    usage = int(read_text(files.memory_usage))
    stat = parse_flat(read_text(files.memory_stat))
    if files.v2:
        return MemorySample(
            usage=usage,
            working_set=max(usage - stat.get("inactive_file", 0), 0),
            rss=stat.get("anon", 0),
            page_faults=stat.get("pgfault", 0),
            major_page_faults=stat.get("pgmajfault", 0),
            limit=limits.memory,
            swap_usage=_optional_int(files.swap_usage),
            swap_limit=limits.swap,
        )
    swapped = stat.get("total_swap")  # present only when swap is accounted
    return MemorySample(
        usage=usage,
        working_set=max(usage - stat.get("total_inactive_file", 0), 0),
        rss=stat.get("total_rss", 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
        limit=limits.memory,
        swap_usage=swapped,
        swap_limit=limits.swap if swapped is not None else None,
    )


def _optional_int(path: str) -> int | None:
    try:
        return int(read_text(path))
    except FileNotFoundError:
        return None


def read_process_count(files: CgroupFiles) -> int:
    """Processes in the cgroup and below: ``pids.current``, else the cgroup.procs lines."""
    if files.pids:
        try:
            return int(read_text(files.pids))
        except FileNotFoundError:  # the v2 root has no pids.current
            pass
    return count_lines(files.procs)


def count_lines(path: Path | str) -> int:
    return len(read_text(path).split())
