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


def _mapping(**kw: object) -> api_pb2.PortMapping:
    return api_pb2.PortMapping(**kw)  # type: ignore[arg-type]


def test_port_mappings_kubelet_sends_are_accepted() -> None:
    validate.port_mappings(
        "pm",
        [
            _mapping(container_port=80),  # a container port without a host port
            _mapping(protocol=api_pb2.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1"),
            _mapping(protocol=api_pb2.SCTP, container_port=9, host_port=9, host_ip="::1"),
        ],
    )


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        (_mapping(protocol=-1, container_port=2), "protocol -1"),
        (_mapping(protocol=7, container_port=2), "protocol 7"),
        (_mapping(container_port=-1), "container_port -1"),
        (_mapping(container_port=80, host_port=70000), "host_port 70000"),
        (_mapping(host_port=8080), "needs a container_port"),
        (_mapping(container_port=1, host_port=2, host_ip=":.@.x"), "not an IP address"),
        (_mapping(container_port=1, host_port=2, host_ip="10.0.0.1/24"), "not an IP address"),
    ],
)
def test_bad_port_mappings_are_invalid(mapping: api_pb2.PortMapping, problem: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=problem):
        validate.port_mappings("pm", [_mapping(container_port=1), mapping])
