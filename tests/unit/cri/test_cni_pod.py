from __future__ import annotations

from pathlib import Path

import pytest

from cri import errors
from cri.cni.pod import (
    ANNOTATIONS_CAPABILITY,
    UNLIMITED_BURST,
    PodNetwork,
    PortMapping,
    capability_args,
    cni_args,
    parse_quantity,
)
from cri.podfiles import DnsConfig


def _pod(**overrides: object) -> PodNetwork:
    fields: dict[str, object] = {
        "id": "abc123",
        "name": "web-0",
        "namespace": "prod",
        "uid": "8d3f",
        "netns": Path("/run/berth/ns/abc123/net"),
    }
    return PodNetwork(**(fields | overrides))  # type: ignore[arg-type]


def test_cni_args() -> None:
    assert cni_args(_pod()) == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=8d3f"
    )


def test_port_mappings_only_with_host_port_and_lowercase_protocol() -> None:
    pod = _pod(
        port_mappings=(
            PortMapping(protocol="TCP", container_port=80, host_port=8080, host_ip="127.0.0.1"),
            PortMapping(protocol="UDP", container_port=53, host_port=0),
            PortMapping(protocol="SCTP", container_port=9, host_port=9),
        )
    )
    assert capability_args(pod)["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
        {"hostPort": 9, "containerPort": 9, "protocol": "sctp"},
    ]


def test_no_host_ports_no_port_mappings_argument() -> None:
    pod = _pod(port_mappings=(PortMapping(container_port=80),))
    assert "portMappings" not in capability_args(pod)


def test_bandwidth_dns_cgroup_and_annotations() -> None:
    annotations = {
        "kubernetes.io/ingress-bandwidth": "10M",
        "kubernetes.io/egress-bandwidth": "1Mi",
        "other": "x",
    }
    pod = _pod(
        annotations=annotations,
        dns=DnsConfig(servers=["10.96.0.10"], searches=["ns.svc"], options=["ndots:5"]),
        cgroup_parent="/kubepods/burstable/pod8d3f",
    )
    args = capability_args(pod)
    assert args["bandwidth"] == {
        "ingressRate": 10_000_000,
        "ingressBurst": UNLIMITED_BURST,
        "egressRate": 1_048_576,
        "egressBurst": UNLIMITED_BURST,
    }
    assert args["dns"] == {
        "servers": ["10.96.0.10"],
        "searches": ["ns.svc"],
        "options": ["ndots:5"],
    }
    assert args["cgroupPath"] == "/kubepods/burstable/pod8d3f"
    assert args[ANNOTATIONS_CAPABILITY] == annotations


def test_minimal_pod_has_only_annotations() -> None:
    assert capability_args(_pod(dns=DnsConfig())) == {ANNOTATIONS_CAPABILITY: {}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1000", 1000),
        ("10M", 10_000_000),
        ("1.5k", 1500),
        ("2Gi", 2 * 2**30),
        ("2e6", 2_000_000),
        ("1500m", 2),  # rounded up like Quantity.Value()
        ("1E", 10**18),
        (" 3k ", 3000),
    ],
)
def test_parse_quantity(text: str, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "10MB", "-5k", "1..2", "inf"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["999", "2P", "nonsense"])
def test_bandwidth_outside_kubelet_limits_is_invalid(text: str) -> None:
    pod = _pod(annotations={"kubernetes.io/egress-bandwidth": text})
    with pytest.raises(errors.InvalidArgument, match=r"abc123.*egress-bandwidth"):
        capability_args(pod)
