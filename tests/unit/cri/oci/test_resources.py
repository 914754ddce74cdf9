"""linux.resources on cgroup v1 and v2, and the oom_score_adj floor."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from structlog.testing import capture_logs

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import resources
from tests.unit.cri.oci.helpers import HOST

MiB = 1 << 20


def _res(**kw: Any) -> api_pb2.LinuxContainerResources:
    return api_pb2.LinuxContainerResources(**kw)


def _linux(
    res: api_pb2.LinuxContainerResources | None, v2: bool = True, **host: Any
) -> dict[str, Any]:
    return resources.linux_resources(res, cgroup_v2=v2, host=dataclasses.replace(HOST, **host))


@pytest.mark.parametrize("v2", [False, True])
def test_cpu_fields(v2: bool) -> None:
    res = _res(
        cpu_shares=512, cpu_quota=50000, cpu_period=100000, cpuset_cpus="0-1", cpuset_mems="0"
    )
    assert _linux(res, v2)["cpu"] == {
        "shares": 512,
        "quota": 50000,
        "period": 100000,
        "cpus": "0-1",
        "mems": "0",
    }


def test_unset_fields_are_left_out() -> None:
    assert _linux(_res()) == {}
    assert _linux(None) == {}
    assert _linux(_res(oom_score_adj=500)) == {}


def test_unlimited_quota_is_kept() -> None:
    assert _linux(_res(cpu_quota=-1))["cpu"] == {"quota": -1}


@pytest.mark.parametrize("v2", [False, True])
def test_memory_limit_without_swap_means_no_swap(v2: bool) -> None:
    assert _linux(_res(memory_limit_in_bytes=64 * MiB), v2)["memory"] == {
        "limit": 64 * MiB,
        "swap": 64 * MiB,
    }


def test_explicit_swap_limit() -> None:
    res = _res(memory_limit_in_bytes=64 * MiB, memory_swap_limit_in_bytes=128 * MiB)
    assert _linux(res)["memory"] == {"limit": 64 * MiB, "swap": 128 * MiB}
    unlimited = _res(memory_limit_in_bytes=64 * MiB, memory_swap_limit_in_bytes=-1)
    assert _linux(unlimited)["memory"] == {"limit": 64 * MiB, "swap": -1}


def test_no_swap_field_without_swap_accounting() -> None:
    res = _res(memory_limit_in_bytes=64 * MiB, memory_swap_limit_in_bytes=128 * MiB)
    assert _linux(res, swap_controller=False)["memory"] == {"limit": 64 * MiB}


@pytest.mark.parametrize(
    ("res", "match"),
    [
        (
            _res(memory_limit_in_bytes=64 * MiB, memory_swap_limit_in_bytes=32 * MiB),
            "below memory_limit",
        ),
        (_res(memory_limit_in_bytes=-2), "memory_limit_in_bytes -2"),
        (_res(memory_swap_limit_in_bytes=-7), "memory_swap_limit_in_bytes -7"),
    ],
)
def test_invalid_memory(res: api_pb2.LinuxContainerResources, match: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=match):
        _linux(res)


def test_hugepages_with_and_without_the_controller() -> None:
    res = _res(hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=4 * MiB)])
    assert _linux(res)["hugepageLimits"] == [{"pageSize": "2MB", "limit": 4 * MiB}]
    with capture_logs() as logs:
        assert "hugepageLimits" not in _linux(res, hugetlb_controller=False)
    assert logs[0]["event"] == "hugepage limits dropped: no hugetlb controller"


def test_unified_on_v2() -> None:
    res = _res(unified={"memory.swap.max": "0", "memory.high": "max"})
    assert _linux(res)["unified"] == {"memory.swap.max": "0", "memory.high": "max"}


def test_unified_on_v1_is_invalid() -> None:
    with pytest.raises(
        errors.InvalidArgument, match=r"unified cgroup settings \(memory.swap.max\)"
    ):
        _linux(_res(unified={"memory.swap.max": "0"}), v2=False)


@pytest.mark.parametrize(
    ("requested", "floor", "expected"),
    [
        (-999, None, -999),
        (-999, 0, 0),
        (500, 0, 500),
        (-5, -10, -5),
        (-2000, None, -1000),
        (5000, 0, 1000),
        (0, 300, 300),
    ],
)
def test_oom_score_adj_floor(requested: int, floor: int | None, expected: int) -> None:
    assert resources.restrict_oom_score_adj(requested, floor) == expected
