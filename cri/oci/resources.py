"""linux.resources from CRI LinuxContainerResources, and the process's oom_score_adj.

The OCI fields are the same on cgroup v1 and v2; runc translates (cpu shares to cpu.weight,
memory+swap to swap.max). What differs is what the host can do:
- `unified` (raw cgroup v2 files) only exists on v2, so a request carrying it on a v1 host is
  refused instead of failing later inside runc;
- swap is only limited when the kernel accounts it (memsw on v1, memory.swap.max on v2). As
  containerd does, a memory limit without a swap limit means "no swap": memory+swap = limit.
  On v2 the kubelet states its swap policy in `unified["memory.swap.max"]`, which runc writes
  after the memory fields, so it wins;
- hugepage limits are dropped when the hugetlb controller is missing — the kubelet sends a zero
  limit for every page size the node has, and containerd tolerates the missing controller too.
PIDs are limited at pod level by the kubelet, not here.
"""

from __future__ import annotations

from typing import Any

import structlog

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.inputs import HostInfo

log = structlog.get_logger(__name__)

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000


def restrict_oom_score_adj(requested: int, floor: int | None) -> int:
    """The oom_score_adj to use: within the kernel's range and never below `floor`.

    `floor` is berthd's own value when it may not lower it (containerd's
    restrict_oom_score_adj); None when any value may be set.
    """
    value = max(OOM_SCORE_ADJ_MIN, min(OOM_SCORE_ADJ_MAX, requested))
    return value if floor is None else max(value, floor)


def _cpu(res: api_pb2.LinuxContainerResources) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if res.cpu_shares > 0:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota != 0:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period > 0:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    return cpu


def _swap(limit: int, swap: int) -> int | None:
    """memory+swap for the OCI `swap` field, or None to leave it unset."""
    if swap < -1:
        raise errors.InvalidArgument(f"memory_swap_limit_in_bytes {swap} is invalid")
    if limit > 0 and swap > 0 and swap < limit:
        raise errors.InvalidArgument(
            f"memory_swap_limit_in_bytes {swap} is below memory_limit_in_bytes {limit}"
        )
    if swap != 0:
        return swap
    return limit if limit > 0 else None


def _memory(res: api_pb2.LinuxContainerResources, swap_controller: bool) -> dict[str, Any]:
    limit = res.memory_limit_in_bytes
    if limit < -1:
        raise errors.InvalidArgument(f"memory_limit_in_bytes {limit} is invalid")
    memory: dict[str, Any] = {}
    if limit != 0:
        memory["limit"] = limit
    swap = _swap(limit, res.memory_swap_limit_in_bytes)
    if swap is not None and swap_controller:
        memory["swap"] = swap
    return memory


def _hugepages(res: api_pb2.LinuxContainerResources, controller: bool) -> list[dict[str, Any]]:
    if res.hugepage_limits and not controller:
        log.debug("hugepage limits dropped: no hugetlb controller", count=len(res.hugepage_limits))
        return []
    return [{"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits]


def _unified(res: api_pb2.LinuxContainerResources, cgroup_v2: bool) -> dict[str, str]:
    if res.unified and not cgroup_v2:
        keys = ", ".join(sorted(res.unified))
        raise errors.InvalidArgument(f"unified cgroup settings ({keys}) need cgroup v2")
    return dict(res.unified)


def linux_resources(
    res: api_pb2.LinuxContainerResources | None, *, cgroup_v2: bool, host: HostInfo
) -> dict[str, Any]:
    """linux.resources without the device rules; empty sections are left out.

    Raises errors.InvalidArgument for negative limits other than -1 (unlimited), a swap limit
    below the memory limit, or `unified` on a cgroup v1 host.
    """
    if res is None:
        return {}
    sections: dict[str, Any] = {
        "cpu": _cpu(res),
        "memory": _memory(res, host.swap_controller),
        "hugepageLimits": _hugepages(res, host.hugetlb_controller),
        "unified": _unified(res, cgroup_v2),
    }
    return {key: value for key, value in sections.items() if value}
