"""What the CNI layer needs to know about a pod, and what it derives for the plugins.

``CNI_ARGS`` and the capability arguments (``runtimeConfig``) follow what the kubelet's own
CNI code and containerd pass (KUBELET-CONTRACT.md §4): the four ``K8S_POD_*`` keys with
``IgnoreUnknown=1``; ``portMappings`` only for ports with a host port, protocol in lower case;
``bandwidth`` from the ``kubernetes.io/{ingress,egress}-bandwidth`` annotations; ``dns``;
``cgroupPath``; and the pod annotations under containerd's capability name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cri import errors
from cri.podfiles import DnsConfig

INGRESS_ANNOTATION = "kubernetes.io/ingress-bandwidth"
EGRESS_ANNOTATION = "kubernetes.io/egress-bandwidth"
ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"
# The kubelet passes no burst; "no limit" in its old kubenet code, in bits.
UNLIMITED_BURST = 2**31 - 1
_MIN_BANDWIDTH = 1_000  # the kubelet refuses < 1k and > 1P bits/s
_MAX_BANDWIDTH = 10**15

_SUFFIXES: Mapping[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    """A CRI port mapping; ``protocol`` is the CRI enum name ("TCP", "UDP", "SCTP")."""

    protocol: str = "TCP"
    container_port: int
    host_port: int = 0
    host_ip: str = ""

    def to_cni(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            mapping["hostIP"] = self.host_ip
        return mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class PodNetwork:
    """A sandbox as the CNI plugins see it. ``netns`` is the pinned network namespace."""

    id: str
    name: str
    namespace: str
    uid: str
    netns: Path | None
    port_mappings: tuple[PortMapping, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    dns: DnsConfig | None = None


def cni_args(pod: PodNetwork) -> str:
    """The CNI_ARGS value for a pod."""
    pairs = (
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.id),
        ("K8S_POD_UID", pod.uid),
    )
    return ";".join(f"{key}={value}" for key, value in pairs)


def parse_quantity(text: str) -> int:
    """A Kubernetes quantity ("10M", "1Gi", "1.5k", "2e6") as an integer, rounded up."""
    text = text.strip()
    number, suffix = text, ""
    for candidate in sorted(_SUFFIXES, key=len, reverse=True):
        if candidate and text.endswith(candidate):
            number, suffix = text[: -len(candidate)], candidate
            break
    try:
        value = Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a quantity") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a quantity")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def _bandwidth_value(pod: PodNetwork, annotation: str) -> int | None:
    text = pod.annotations.get(annotation)
    if text is None:
        return None
    try:
        value = parse_quantity(text)
    except ValueError as exc:
        raise errors.InvalidArgument(f"pod {pod.id} annotation {annotation}: {exc}") from None
    if not _MIN_BANDWIDTH <= value <= _MAX_BANDWIDTH:
        raise errors.InvalidArgument(
            f"pod {pod.id} annotation {annotation}={text!r} is outside 1k..1P bits/s"
        )
    return value


def bandwidth(pod: PodNetwork) -> dict[str, int] | None:
    """The ``bandwidth`` capability argument (bits/s), or None without annotations."""
    limits: dict[str, int] = {}
    ingress = _bandwidth_value(pod, INGRESS_ANNOTATION)
    egress = _bandwidth_value(pod, EGRESS_ANNOTATION)
    if ingress is not None:
        limits |= {"ingressRate": ingress, "ingressBurst": UNLIMITED_BURST}
    if egress is not None:
        limits |= {"egressRate": egress, "egressBurst": UNLIMITED_BURST}
    return limits or None


def capability_args(pod: PodNetwork) -> dict[str, Any]:
    """Every capability argument berth can supply for ``pod``; a plugin gets the ones it
    declares in its ``capabilities``. Raises InvalidArgument for a bad bandwidth annotation."""
    args: dict[str, Any] = {}
    mappings = [pm.to_cni() for pm in pod.port_mappings if pm.host_port > 0]
    if mappings:
        args["portMappings"] = mappings
    limits = bandwidth(pod)
    if limits:
        args["bandwidth"] = limits
    if pod.dns is not None and not pod.dns.is_empty():
        args["dns"] = {
            "servers": list(pod.dns.servers),
            "searches": list(pod.dns.searches),
            "options": list(pod.dns.options),
        }
    if pod.cgroup_parent:
        args["cgroupPath"] = pod.cgroup_parent
    args[ANNOTATIONS_CAPABILITY] = dict(pod.annotations)
    return args
