"""Interface counters of a pod's network namespace, for PodSandboxStats' NetworkUsage.

Read from ``/proc/thread-self/net/dev`` by a thread that joined the pod's netns: that file
follows the reading thread's namespace (``/proc/self/net`` would follow the main thread's), it
needs no netlink socket and no process, and one read returns every interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cri import netns

DEFAULT_INTERFACE = "eth0"


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceStats:
    name: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def parse_net_dev(text: str) -> dict[str, InterfaceStats]:
    """Parse /proc/net/dev: two header lines, then ``name: 8 receive and 8 transmit fields``."""
    stats: dict[str, InterfaceStats] = {}
    for line in text.splitlines()[2:]:
        name, sep, counters = line.partition(":")
        fields = counters.split()
        if not sep or len(fields) < 16:
            continue
        rx, tx = [int(v) for v in fields[:8]], [int(v) for v in fields[8:16]]
        stats[name.strip()] = InterfaceStats(
            name=name.strip(),
            rx_bytes=rx[0],
            rx_packets=rx[1],
            rx_errors=rx[2],
            rx_dropped=rx[3],
            tx_bytes=tx[0],
            tx_packets=tx[1],
            tx_errors=tx[2],
            tx_dropped=tx[3],
        )
    return stats


def read_interface_stats(net_path: Path) -> dict[str, InterfaceStats]:
    """Counters of every interface in the netns pinned at ``net_path`` (``lo`` included)."""
    text = netns.run_in_netns(net_path, lambda: Path("/proc/thread-self/net/dev").read_text())
    return parse_net_dev(text)
