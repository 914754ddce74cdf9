from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cri.cni.result import ResultInvalid, parse_result

RESULT_040: dict[str, Any] = {
    "cniVersion": "0.4.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
        {"name": "veth1234", "mac": "0a:58:0a:f4:00:02"},
        {"name": "eth0", "mac": "0a:58:0a:f4:00:03", "sandbox": "/run/netns/p"},
    ],
    "ips": [
        {"version": "6", "address": "fd00:10::5/64", "gateway": "fd00:10::1", "interface": 2},
        {"version": "4", "address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 2},
        {"version": "4", "address": "10.244.0.1/24", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.local"], "options": ["ndots:5"]},
}

RESULT_100: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
    "ips": [
        {"address": "10.88.0.7/16", "gateway": "10.88.0.1", "interface": 0},
        {"address": "fd00::7/64", "interface": 0},
    ],
}


def test_040_dual_stack_pod_ips_ipv4_first_host_side_excluded() -> None:
    result = parse_result(RESULT_040)
    assert result.ips == ("10.244.0.5", "fd00:10::5")
    assert result.cni_version == "0.4.0"
    assert result.interfaces[2].sandbox == "/run/netns/p"
    assert result.ip_configs[1].gateway == ipaddress.ip_address("10.244.0.1")
    assert result.routes[0].dst == ipaddress.ip_network("0.0.0.0/0")
    assert result.routes[1].gw is None
    assert result.dns.nameservers == ("10.96.0.10",) and result.dns.options == ("ndots:5",)
    assert result.raw == RESULT_040


def test_100_without_version_field() -> None:
    result = parse_result(RESULT_100)
    assert result.ips == ("10.88.0.7", "fd00::7")
    assert result.ip_configs[1].gateway is None


def test_ips_without_interfaces_are_the_pods() -> None:
    result = parse_result({"cniVersion": "1.0.0", "ips": [{"address": "fd00::9/64"}]})
    assert result.ips == ("fd00::9",)


def test_legacy_020_format() -> None:
    raw = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.2.3/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd00::3/64"},
        "dns": {"nameservers": ["1.1.1.1"]},
    }
    result = parse_result(raw)
    assert result.ips == ("10.1.2.3", "fd00::3")
    assert len(result.routes) == 1 and result.dns.nameservers == ("1.1.1.1",)


def test_empty_result_has_no_ips() -> None:
    assert parse_result({"cniVersion": "1.0.0"}).ips == ()


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"ips": "10.0.0.1"},
        {"ips": [{"address": "10.0.0.300/24"}]},
        {"ips": [{"address": "10.0.0.3/24", "gateway": "nope"}]},
        {"ips": [{"address": "10.0.0.3/24", "interface": "0"}]},
        {"routes": [{"dst": "default"}]},
        {"interfaces": [{"name": 5}]},
        {"dns": {"nameservers": [1]}},
    ],
)
def test_invalid_results(raw: Any) -> None:
    with pytest.raises(ResultInvalid):
        parse_result(raw)
