"""CNI ADD results: parsing the formats plugins print, and choosing the pod's IPs.

Handles the 1.x/0.4.0/0.3.x shape (``interfaces``, ``ips`` with an ``interface`` index,
``routes``, ``dns``; ``ips[].version`` exists only before 1.0.0) and the legacy 0.1/0.2 shape
(``ip4``/``ip6`` objects). The pod's IPs are those on interfaces inside the sandbox (or on no
named interface), IPv4 first: the kubelet takes the first as the pod IP and the rest as
additional (dual-stack) IPs, as containerd reports them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ResultInvalid(ValueError):
    """A plugin printed something that is not a CNI result."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""  # netns path for interfaces inside the pod, "" on the host


@dataclass(frozen=True, slots=True, kw_only=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None  # index into CniResult.interfaces


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CniResult:
    """The parsed result of a network ADD; ``ips`` are the pod's, the primary first."""

    cni_version: str
    ips: tuple[str, ...]
    ip_configs: tuple[IPConfig, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Dns = field(default_factory=Dns)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _list(raw: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise ResultInvalid(f"{key} is not a list")
    return value


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key) or ""
    if not isinstance(value, str):
        raise ResultInvalid(f"{key} is not a string")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    values = _list(raw, key)
    if not all(isinstance(v, str) for v in values):
        raise ResultInvalid(f"{key} holds a non-string")
    return tuple(values)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ResultInvalid(f"{what} is not an object")
    return value


def _ip(value: str, what: str) -> IPAddress | None:
    if not value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ResultInvalid(f"{what} {value!r} is not an IP address") from None


def _interface(raw: Any) -> Interface:
    obj = _object(raw, "interface")
    return Interface(name=_str(obj, "name"), mac=_str(obj, "mac"), sandbox=_str(obj, "sandbox"))


def _ip_config(raw: Any, address_key: str = "address") -> IPConfig:
    obj = _object(raw, "ip")
    try:
        address = ipaddress.ip_interface(_str(obj, address_key))
    except ValueError:
        raise ResultInvalid(f"ip address {obj.get(address_key)!r} is not an IP/prefix") from None
    index = obj.get("interface")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise ResultInvalid(f"ip interface index {index!r} is not a number")
    return IPConfig(address=address, gateway=_ip(_str(obj, "gateway"), "gateway"), interface=index)


def _route(raw: Any) -> Route:
    obj = _object(raw, "route")
    try:
        dst = ipaddress.ip_network(_str(obj, "dst"), strict=False)
    except ValueError:
        raise ResultInvalid(f"route dst {obj.get('dst')!r} is not a network") from None
    return Route(dst=dst, gw=_ip(_str(obj, "gw"), "route gw"))


def _dns(raw: Any) -> Dns:
    obj = _object(raw or {}, "dns")
    return Dns(
        nameservers=_strings(obj, "nameservers"),
        domain=_str(obj, "domain"),
        search=_strings(obj, "search"),
        options=_strings(obj, "options"),
    )


def _legacy_ips(raw: Mapping[str, Any]) -> tuple[list[IPConfig], list[Route]]:
    """0.1.0/0.2.0: ``ip4``/``ip6`` objects with ``ip``, ``gateway`` and ``routes``."""
    ips: list[IPConfig] = []
    routes: list[Route] = []
    for key in ("ip4", "ip6"):
        if raw.get(key):
            family = _object(raw[key], key)
            ips.append(_ip_config(family, address_key="ip"))
            routes.extend(_route(r) for r in _list(family, "routes"))
    return ips, routes


def pod_ips(configs: Sequence[IPConfig], interfaces: Sequence[Interface]) -> tuple[str, ...]:
    """Addresses of the pod (sandbox interfaces, or none named), IPv4 first, no duplicates."""

    def in_pod(config: IPConfig) -> bool:
        index = config.interface
        if index is None or not 0 <= index < len(interfaces):
            return True
        return bool(interfaces[index].sandbox)

    chosen = [c.address.ip for c in configs if in_pod(c)] or [c.address.ip for c in configs]
    ordered = sorted(chosen, key=lambda ip: ip.version)  # stable: keeps order within a family
    return tuple(dict.fromkeys(str(ip) for ip in ordered))


def parse_result(raw: Any) -> CniResult:
    """Parse a decoded ADD result; raises ResultInvalid."""
    obj = _object(raw, "result")
    if "ip4" in obj or "ip6" in obj:
        ip_configs, routes = _legacy_ips(obj)
        interfaces: list[Interface] = []
    else:
        interfaces = [_interface(i) for i in _list(obj, "interfaces")]
        ip_configs = [_ip_config(i) for i in _list(obj, "ips")]
        routes = [_route(r) for r in _list(obj, "routes")]
    return CniResult(
        cni_version=_str(obj, "cniVersion"),
        ips=pod_ips(ip_configs, interfaces),
        ip_configs=tuple(ip_configs),
        interfaces=tuple(interfaces),
        routes=tuple(routes),
        dns=_dns(obj.get("dns")),
        raw=dict(obj),
    )
