"""The kernel's side of a container's cgroup, read directly, for tests that check berth's numbers
against it: cgroup v1 (and hybrid) or v2, cgroupfs or systemd driver.

The driver is the one the test daemons run with (``BERTH_TEST_CGROUP_DRIVER``, set by e2e/vm);
with systemd a pod's cgroup parent is a slice and a container's cgroup a ``berth-<id>.scope``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cri import cgroups
from cri.stats.cgroupfs import CgroupLayout, parse_proc_cgroup
from cri.updates import shares_to_weight

DRIVER = os.environ.get("BERTH_TEST_CGROUP_DRIVER", "cgroupfs")
SYSTEMD = DRIVER == "systemd"
V2 = cgroups.is_cgroup_v2()
CGROUP_ROOT = Path("/sys/fs/cgroup")


def pod_parent(name: str) -> str:
    """A cgroup parent of the driver's kind for a test pod: ``/<name>`` or ``<name>.slice``."""
    return f"{name}.slice" if SYSTEMD else f"/{name}"


def parent_leaf(parent: str) -> str:
    """The name of the pod's cgroup directory for ``parent``."""
    return cgroups.slice_name(parent) if SYSTEMD else parent.rstrip("/").rsplit("/", 1)[-1]


def container_leaf(container_id: str) -> str:
    """The name of a container's cgroup directory (the kubelet and cAdvisor look for these)."""
    return f"{cgroups.SCOPE_PREFIX}-{container_id}.scope" if SYSTEMD else container_id


def in_berth_container(proc_cgroup: str) -> bool:
    """Whether a ``/proc/<pid>/cgroup`` text places the process in a berth container's cgroup
    of a pod without a cgroup parent of its own (``/berth/<id>`` or ``berth.slice/berth-*``)."""
    if SYSTEMD:
        return f"/{cgroups.DEFAULT_SLICE}/{cgroups.SCOPE_PREFIX}-" in proc_cgroup
    return f"{cgroups.DEFAULT_PARENT}/" in proc_cgroup


def remove_pod_parents(parents: Iterable[Path | str]) -> None:
    """Remove test pods' cgroup parents: stop the slice (systemd), else rmdir, deepest first."""
    for parent in sorted({str(p) for p in parents}, key=len, reverse=True):
        if SYSTEMD:
            name = cgroups.slice_name(str(parent))
            subprocess.run(["systemctl", "stop", name], check=False, capture_output=True)
        elif Path(parent).is_dir():
            Path(parent).rmdir()


def parent_dirs(parent: str, own_bases: Iterable[Path]) -> list[Path]:
    """A pod cgroup parent's directories: below this process's cgroup in each hierarchy
    (``own_bases``; the cgroupfs driver with ``cgroup_root = "self"``, as the test daemons run),
    or the slice's directory (systemd; cgroup v2)."""
    if SYSTEMD:
        return [CGROUP_ROOT / cgroups.slice_path(cgroups.slice_name(parent)).lstrip("/")]
    return [base / parent.strip("/") for base in own_bases]


def container_id_of(leaf: str) -> str:
    """The container id a cgroup directory below a pod's parent is named after."""
    if SYSTEMD:
        return leaf.removeprefix(f"{cgroups.SCOPE_PREFIX}-").removesuffix(".scope")
    return leaf


def cgroup_dir(pid: int, controller: str) -> Path:
    """The directory of ``controller``'s files for process ``pid`` (the one v2 directory)."""
    layout = CgroupLayout.from_text(Path("/proc/self/mountinfo").read_text(), v2_controllers=V2)
    directory = layout.dirs(parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())).dir(
        controller
    )
    assert directory is not None, f"no {controller} cgroup for {pid}"
    return directory


def read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _flat(path: Path) -> dict[str, int]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def cpu_usage_ns(directory: Path) -> int:
    if V2:
        return _flat(directory / "cpu.stat")["usage_usec"] * 1000
    return read_int(directory / "cpuacct.usage")


def memory_usage(directory: Path) -> int:
    return read_int(directory / ("memory.current" if V2 else "memory.usage_in_bytes"))


def memory_stat(directory: Path) -> dict[str, int]:
    """``memory.stat`` with the keys berth's numbers come from, under one name each:
    ``inactive_file``, ``rss``, ``pgfault`` (v1: the ``total_*`` keys, which count children)."""
    stat = _flat(directory / "memory.stat")
    if V2:
        return {
            "inactive_file": stat["inactive_file"],
            "rss": stat["anon"],
            "pgfault": stat["pgfault"],
        }
    return {
        "inactive_file": stat["total_inactive_file"],
        "rss": stat["total_rss"],
        "pgfault": stat["total_pgfault"],
    }


def memory_limit(directory: Path) -> int:
    return read_int(directory / ("memory.max" if V2 else "memory.limit_in_bytes"))


def cpu_quota(directory: Path) -> int:
    return read_int(directory / ("cpu.max" if V2 else "cpu.cfs_quota_us"))


def cpu_shares_as_set(directory: Path, shares: int) -> bool:
    """Whether the cgroup's CPU weight is what ``shares`` becomes (cpu.shares, or cpu.weight
    by runc's mapping on v2)."""
    if V2:
        return read_int(directory / "cpu.weight") == shares_to_weight(shares)
    return read_int(directory / "cpu.shares") == shares
