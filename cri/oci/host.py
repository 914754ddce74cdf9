"""Reading the `HostInfo` facts spec generation needs from the running machine.

Called once by the daemon at start-up (the answers do not change while it runs); everything
else in cri.oci is pure and takes the result as data.
"""

from __future__ import annotations

import glob
import os
import re
import socket

from cri.oci.inputs import HostInfo
from cri.oci.security import ALL_CAPABILITIES, capabilities_from_mask


def bounding_capabilities(status_text: str) -> tuple[str, ...]:
    """The CapBnd set of a /proc/<pid>/status text (every known capability if absent)."""
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)$", status_text, re.MULTILINE)
    return capabilities_from_mask(int(match.group(1), 16)) if match else ALL_CAPABILITIES


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as "6.1.0-18-amd64"."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _swap_controller(cgroup_v2: bool, root: str) -> bool:
    if not cgroup_v2:
        return os.path.exists(f"{root}/memory/memory.memsw.limit_in_bytes")
    # The root cgroup has no memory.swap.max; any child that has the memory controller does.
    return bool(glob.glob(f"{root}/*/memory.swap.max"))


def _hugetlb_controller(cgroup_v2: bool, root: str) -> bool:
    if not cgroup_v2:
        return os.path.isdir(f"{root}/hugetlb")
    return "hugetlb" in _read(f"{root}/cgroup.controllers").split()


def detect_host(*, cgroup_v2: bool, cgroup_root: str = "/sys/fs/cgroup") -> HostInfo:
    """The facts of this machine: hostname, architecture, kernel, capabilities, controllers."""
    uname = os.uname()
    return HostInfo(
        hostname=socket.gethostname(),
        machine=uname.machine,
        kernel=kernel_version(uname.release),
        capabilities=bounding_capabilities(_read("/proc/self/status")),
        swap_controller=_swap_controller(cgroup_v2, cgroup_root),
        hugetlb_controller=_hugetlb_controller(cgroup_v2, cgroup_root),
    )
