from __future__ import annotations

import pytest

from cri import errors, validate
from cri.api.v1 import api_pb2


@pytest.mark.parametrize("name", ["", "x" * 254, "a\nb", "a;b=c", " padded", "nul\x00"])
def test_bad_names(name: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"metadata\.name"):
        validate.metadata_name("metadata.name", name)


def test_good_name() -> None:
    validate.metadata_name("metadata.name", "web-0.example")


@pytest.mark.parametrize("path", ["/abs.log", "../up.log", "a/../../b.log", "a\x00"])
def test_log_paths_stay_below_their_directory(path: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"log_path"):
        validate.relative_path("log_path", path)


def test_cgroup_parent_cannot_climb() -> None:
    validate.cgroup_parent("/kubepods/besteffort/pod1")
    validate.cgroup_parent("kubepods-besteffort.slice")
    with pytest.raises(errors.InvalidArgument, match="cgroup_parent"):
        validate.cgroup_parent("/kubepods/../../escape")


def test_systemd_cgroup_parents_must_be_slices() -> None:
    validate.cgroup_parent("", driver="systemd")
    validate.cgroup_parent("kubepods-besteffort-pod1.slice", driver="systemd")
    with pytest.raises(errors.InvalidArgument, match="is not a systemd slice"):
        validate.cgroup_parent("/kubepods/besteffort/pod1", driver="systemd")
    with pytest.raises(errors.InvalidArgument, match=r"must not contain '\.\.'"):
        validate.cgroup_parent("../x.slice", driver="systemd")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_quota", 2**63 - 1),
        ("cpu_shares", -5),
        ("memory_limit_in_bytes", -2),
        ("oom_score_adj", 1001),
        ("cpu_period", 10_000_000),
    ],
)
def test_absurd_resources(field: str, value: int) -> None:
    res = api_pb2.LinuxContainerResources(**{field: value})
    with pytest.raises(errors.InvalidArgument, match=field):
        validate.resources("linux.resources", res)


def test_ordinary_resources() -> None:
    validate.resources(
        "r",
        api_pb2.LinuxContainerResources(
            cpu_shares=2,
            cpu_period=100_000,
            cpu_quota=-1,
            memory_limit_in_bytes=1 << 30,
            oom_score_adj=-998,
        ),
    )
