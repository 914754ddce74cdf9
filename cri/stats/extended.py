"""The cAdvisor-style values of one container (or pod) cgroup, for ListPodSandboxMetrics.

Each reader returns ``Value``s: a metric family name, the values of the family's extra labels
(beyond pod/namespace/container/id/image) and an integer (the CRI carries uint64, so seconds
are whole seconds, as containerd and CRI-O send them). A group whose files are missing (a
controller not mounted, an older kernel) returns nothing rather than zeros; the caller skips
it. Unlimited limits are reported as 0, cAdvisor's "no limit".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cri.stats.cgroupfs import CgroupDirs
from cri.stats.readers import (
    count_lines,
    parse_flat,
    parse_v1_limit,
    parse_v2_limit,
    read_text,
)

NS = 1_000_000_000
USER_HZ = 100  # cpuacct.stat ticks (the kernel's USER_HZ on every Linux ABI berth targets)


@dataclass(frozen=True, slots=True)
class Value:
    family: str
    labels: tuple[str, ...]
    value: int


Reader = Callable[[CgroupDirs], list[Value]]


def _v(family: str, value: int, *labels: str) -> Value:
    return Value(family, labels, max(int(value), 0))


def _dir(dirs: CgroupDirs, controller: str) -> Path:
    d = dirs.dir(controller)
    if d is None:
        raise FileNotFoundError(f"{controller} cgroup controller is not mounted")
    return d


def _limit_or_zero(limit: int | None) -> int:
    return 0 if limit is None else limit


# -- CPU ------------------------------------------------------------------------------------


def cpu_values(dirs: CgroupDirs) -> list[Value]:
    total, user, system, throttling = _cpu_v2(dirs) if dirs.v2 else _cpu_v1(dirs)
    values = [
        _v("container_cpu_usage_seconds_total", total // NS),
        _v("container_cpu_user_seconds_total", user // NS),
        _v("container_cpu_system_seconds_total", system // NS),
    ]
    periods, throttled, throttled_ns = throttling
    values += [
        _v("container_cpu_cfs_periods_total", periods),
        _v("container_cpu_cfs_throttled_periods_total", throttled),
        _v("container_cpu_cfs_throttled_seconds_total", throttled_ns // NS),
    ]
    return values


def _cpu_v1(dirs: CgroupDirs) -> tuple[int, int, int, tuple[int, int, int]]:
    acct = _dir(dirs, "cpuacct")
    total = int(read_text(acct / "cpuacct.usage"))
    try:
        user, system = (
            int(read_text(acct / "cpuacct.usage_user")),
            int(read_text(acct / "cpuacct.usage_sys")),
        )
    except FileNotFoundError:  # kernels before 4.7: ticks in cpuacct.stat
        ticks = parse_flat(read_text(acct / "cpuacct.stat"))
        user, system = ticks["user"] * NS // USER_HZ, ticks["system"] * NS // USER_HZ
    stat = parse_flat(read_text(_dir(dirs, "cpu") / "cpu.stat"))
    throttling = (stat["nr_periods"], stat["nr_throttled"], stat["throttled_time"])
    return total, user, system, throttling


def _cpu_v2(dirs: CgroupDirs) -> tuple[int, int, int, tuple[int, int, int]]:
    stat = parse_flat(read_text(_dir(dirs, "cpu") / "cpu.stat"))
    throttling = (
        stat.get("nr_periods", 0),
        stat.get("nr_throttled", 0),
        stat.get("throttled_usec", 0) * 1000,
    )
    us = 1000
    return stat["usage_usec"] * us, stat["user_usec"] * us, stat["system_usec"] * us, throttling


# -- memory ---------------------------------------------------------------------------------


def memory_values(dirs: CgroupDirs) -> list[Value]:
    d = _dir(dirs, "memory")
    return _memory_v2(d) if dirs.v2 else _memory_v1(d)


def _memory_v1(d: Path) -> list[Value]:
    stat = parse_flat(read_text(d / "memory.stat"))
    usage = int(read_text(d / "memory.usage_in_bytes"))
    values = [
        _v("container_memory_usage_bytes", usage),
        _v("container_memory_max_usage_bytes", int(read_text(d / "memory.max_usage_in_bytes"))),
        _v("container_memory_failcnt", int(read_text(d / "memory.failcnt"))),
        _v("container_memory_working_set_bytes", usage - stat.get("total_inactive_file", 0)),
        _v("container_memory_cache", stat.get("total_cache", 0)),
        _v("container_memory_rss", stat.get("total_rss", 0)),
        _v("container_memory_mapped_file", stat.get("total_mapped_file", 0)),
        _v("container_memory_swap", stat.get("total_swap", 0)),
        _v("container_memory_total_active_file_bytes", stat.get("total_active_file", 0)),
        _v("container_memory_total_inactive_file_bytes", stat.get("total_inactive_file", 0)),
    ]
    values += _failures(stat.get("pgfault", 0), stat.get("pgmajfault", 0), "container")
    values += _failures(stat.get("total_pgfault", 0), stat.get("total_pgmajfault", 0), "hierarchy")
    with contextlib.suppress(FileNotFoundError):  # kernels built without kmem accounting
        kmem = int(read_text(d / "memory.kmem.usage_in_bytes"))
        values.append(_v("container_memory_kernel_usage", kmem))
    oom = parse_flat(read_text(d / "memory.oom_control"))
    values.append(_v("container_oom_events_total", oom.get("oom_kill", 0)))
    return values


# Kernel memory as cAdvisor sums it on v2 kernels that have no "kernel" key in memory.stat.
_V2_KERNEL_KEYS = ("kernel_stack", "pagetables", "percpu", "sock", "vmalloc", "slab")


def _memory_v2(d: Path) -> list[Value]:
    stat = parse_flat(read_text(d / "memory.stat"))
    usage = int(read_text(d / "memory.current"))
    events = parse_flat(read_text(d / "memory.events"))
    kernel = stat.get("kernel", sum(stat.get(k, 0) for k in _V2_KERNEL_KEYS))
    values = [
        _v("container_memory_usage_bytes", usage),
        _v("container_memory_failcnt", events.get("max", 0)),
        _v("container_memory_working_set_bytes", usage - stat.get("inactive_file", 0)),
        _v("container_memory_cache", stat.get("file", 0)),
        _v("container_memory_rss", stat.get("anon", 0)),
        _v("container_memory_mapped_file", stat.get("file_mapped", 0)),
        _v("container_memory_kernel_usage", kernel),
        _v("container_memory_total_active_file_bytes", stat.get("active_file", 0)),
        _v("container_memory_total_inactive_file_bytes", stat.get("inactive_file", 0)),
        _v("container_oom_events_total", events.get("oom_kill", 0)),
    ]
    # v2 counts faults for the subtree only; cAdvisor reports them under both scopes.
    for scope in ("container", "hierarchy"):
        values += _failures(stat.get("pgfault", 0), stat.get("pgmajfault", 0), scope)
    for name, family in (("memory.peak", "max_usage_bytes"), ("memory.swap.current", "swap")):
        # memory.peak needs 5.19; the swap files need swap accounting.
        with contextlib.suppress(FileNotFoundError):
            values.append(_v(f"container_memory_{family}", int(read_text(d / name))))
    return values


def _failures(faults: int, major: int, scope: str) -> list[Value]:
    return [
        _v("container_memory_failures_total", faults, "pgfault", scope),
        _v("container_memory_failures_total", major, "pgmajfault", scope),
    ]


# -- limits as configured (cAdvisor's container_spec_*) ------------------------------------


def spec_values(dirs: CgroupDirs) -> list[Value]:
    return _spec_v2(dirs) if dirs.v2 else _spec_v1(dirs)


def _spec_v1(dirs: CgroupDirs) -> list[Value]:
    cpu, mem = _dir(dirs, "cpu"), _dir(dirs, "memory")
    quota = int(read_text(cpu / "cpu.cfs_quota_us"))
    values = [
        _v("container_spec_cpu_period", int(read_text(cpu / "cpu.cfs_period_us"))),
        _v("container_spec_cpu_shares", int(read_text(cpu / "cpu.shares"))),
        _v("container_spec_memory_limit_bytes", _v1_limit(mem / "memory.limit_in_bytes")),
        _v(
            "container_spec_memory_reservation_limit_bytes",
            _v1_limit(mem / "memory.soft_limit_in_bytes"),
        ),
    ]
    if quota > 0:
        values.append(_v("container_spec_cpu_quota", quota))
    with contextlib.suppress(FileNotFoundError):  # swap accounting disabled
        both = _v1_limit(mem / "memory.memsw.limit_in_bytes")
        values.append(_v("container_spec_memory_swap_limit_bytes", both))
    return values


def _v1_limit(path: Path) -> int:
    return _limit_or_zero(parse_v1_limit(read_text(path)))


def _spec_v2(dirs: CgroupDirs) -> list[Value]:
    d, mem = _dir(dirs, "cpu"), _dir(dirs, "memory")
    quota, _, period = read_text(d / "cpu.max").strip().partition(" ")
    weight = int(read_text(d / "cpu.weight"))
    values = [
        _v("container_spec_cpu_period", int(period or 100000)),
        _v("container_spec_cpu_shares", weight_to_shares(weight)),
        _v("container_spec_memory_limit_bytes", _v2_limit(mem / "memory.max")),
        _v("container_spec_memory_reservation_limit_bytes", _v2_limit(mem / "memory.low")),
    ]
    if quota != "max":
        values.append(_v("container_spec_cpu_quota", int(quota)))
    try:
        swap = parse_v2_limit(read_text(mem / "memory.swap.max"))
    except FileNotFoundError:  # swap accounting disabled
        return values
    memory = parse_v2_limit(read_text(mem / "memory.max"))
    # cAdvisor's swap limit is memory+swap, as v1's memsw limit is.
    both = None if swap is None or memory is None else swap + memory
    values.append(_v("container_spec_memory_swap_limit_bytes", _limit_or_zero(both)))
    return values


def _v2_limit(path: Path) -> int:
    return _limit_or_zero(parse_v2_limit(read_text(path)))


def weight_to_shares(weight: int) -> int:
    """cpu.weight (1..10000) back to cpu.shares (2..262144), the inverse of runc's mapping."""
    return 2 + (weight - 1) * 262142 // 9999


# -- processes, threads, files --------------------------------------------------------------


def process_values(dirs: CgroupDirs, proc: Path) -> list[Value]:
    cg = _dir(dirs, "pids") if dirs.dir("pids") is not None else _dir(dirs, "memory")
    pids = read_text(cg / "cgroup.procs").split()
    threads = count_lines(cg / ("cgroup.threads" if dirs.v2 else "tasks"))
    fds, sockets = _open_files(proc, pids)
    return [
        _v("container_processes", len(pids)),
        _v("container_threads", threads),
        _v("container_threads_max", _threads_max(dirs)),
        _v("container_file_descriptors", fds),
        _v("container_sockets", sockets),
    ]


def _threads_max(dirs: CgroupDirs) -> int:
    pids = dirs.dir("pids")
    if pids is None:
        return 0
    try:
        return _limit_or_zero(parse_v2_limit(read_text(pids / "pids.max")))
    except FileNotFoundError:
        return 0


def _open_files(proc: Path, pids: list[str]) -> tuple[int, int]:
    """(open descriptors, of which sockets) over the processes; vanished ones are skipped."""
    fds = sockets = 0
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        fds += len(names)
        for name in names:
            try:
                sockets += os.readlink(fd_dir / name).startswith("socket:")
            except OSError:
                continue
    return fds, sockets


# -- block IO -------------------------------------------------------------------------------


def io_values(dirs: CgroupDirs, sys_dev_block: Path = Path("/sys/dev/block")) -> list[Value]:
    """Per-device bytes and operations; nothing when the kernel keeps no per-device counts."""
    per_device = _io_v2(dirs) if dirs.v2 else _io_v1(dirs)
    values: list[Value] = []
    for (major, minor), ops in sorted(per_device.items()):
        device = device_name(sys_dev_block, major, minor)
        values += [
            _v("container_fs_reads_bytes_total", ops.get("rbytes", 0), device),
            _v("container_fs_writes_bytes_total", ops.get("wbytes", 0), device),
            _v("container_fs_reads_total", ops.get("rios", 0), device),
            _v("container_fs_writes_total", ops.get("wios", 0), device),
        ]
        for op, key in (("Read", "rbytes"), ("Write", "wbytes")):
            values.append(
                _v("container_blkio_device_usage_total", ops.get(key, 0), device, major, minor, op)
            )
    return values


def parse_io_stat(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """v2 ``io.stat``: ``MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..`` per line."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for line in text.splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        out[(major, minor)] = {
            k: int(v) for k, _, v in (p.partition("=") for p in pairs) if v.isdigit()
        }
    return out


def parse_blkio(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """v1 ``blkio.throttle.io_service*_recursive``: ``MAJ:MIN Read|Write|... N`` lines."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue  # the "Total N" line
        major, _, minor = fields[0].partition(":")
        out.setdefault((major, minor), {})[fields[1]] = int(fields[2])
    return out


def _io_v2(dirs: CgroupDirs) -> dict[tuple[str, str], dict[str, int]]:
    return parse_io_stat(read_text(_dir(dirs, "io") / "io.stat"))


def _io_v1(dirs: CgroupDirs) -> dict[tuple[str, str], dict[str, int]]:
    d = _dir(dirs, "blkio")
    nbytes = parse_blkio(read_text(d / "blkio.throttle.io_service_bytes_recursive"))
    nops = parse_blkio(read_text(d / "blkio.throttle.io_serviced_recursive"))
    out: dict[tuple[str, str], dict[str, int]] = {}
    for dev in nbytes.keys() | nops.keys():
        b, o = nbytes.get(dev, {}), nops.get(dev, {})
        out[dev] = {
            "rbytes": b.get("Read", 0),
            "wbytes": b.get("Write", 0),
            "rios": o.get("Read", 0),
            "wios": o.get("Write", 0),
        }
    return out


def device_name(sys_dev_block: Path, major: str, minor: str) -> str:
    """``/dev/<name>`` from the device's uevent, or ``major:minor`` when it is unknown."""
    try:
        uevent = read_text(sys_dev_block / f"{major}:{minor}" / "uevent")
    except OSError:
        return f"{major}:{minor}"
    for line in uevent.splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.removeprefix("DEVNAME=")
    return f"{major}:{minor}"


# -- pressure (cgroup v2 PSI) ---------------------------------------------------------------


def parse_pressure(text: str) -> dict[str, int]:
    """``some|full avg10=.. avg60=.. avg300=.. total=<us>`` lines -> {"some": us, "full": us}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            key, _, value = f.partition("=")
            if key == "total":
                out[kind] = int(value)
    return out


def pressure_values(dirs: CgroupDirs) -> list[Value]:
    """Stalled (``full``) and waiting (``some``) time per resource; v2 only."""
    if not dirs.v2:
        return []
    d = _dir(dirs, "cpu")
    values: list[Value] = []
    for resource in ("cpu", "memory", "io"):
        try:
            totals = parse_pressure(read_text(d / f"{resource}.pressure"))
        except FileNotFoundError:  # PSI disabled (psi=0) or the v2 root
            continue
        for kind, psi in (("stalled", "full"), ("waiting", "some")):
            if psi in totals:
                values.append(
                    _v(
                        f"container_pressure_{resource}_{kind}_seconds_total",
                        totals[psi] // 1_000_000,
                    )
                )
    return values
