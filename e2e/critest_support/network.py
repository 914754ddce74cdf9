"""A CNI bridge network of the run's own: its own bridge name, subnet and IPAM directory.

Both runtimes read the same conflist (one after the other); the bridge is deleted at the end.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CNI_BIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True, slots=True, kw_only=True)
class CniNetwork:
    conf_dir: Path
    bridge: str
    subnet: str
    gateway: str


def used_networks(route_table: str) -> list[ipaddress.IPv4Network]:
    """Destinations in /proc/net/route (hex, little-endian) as networks."""
    nets = []
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        nets.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return nets


def pick_subnet(used: list[ipaddress.IPv4Network], rng: random.Random) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps no route except the default route."""
    routed = [n for n in used if n.prefixlen > 0]
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.{rng.randrange(60, 100)}.{rng.randrange(256)}.0/24")
        if not any(candidate.overlaps(n) for n in routed):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test bridge")


def conflist(name: str, bridge: str, subnet: str, gateway: str, ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def create_network(workdir: Path, rng: random.Random | None = None) -> CniNetwork:
    """Write the conflist under `workdir`; the bridge itself appears with the first pod."""
    rng = rng or random.Random()
    subnet = pick_subnet(used_networks(Path("/proc/net/route").read_text()), rng)
    bridge = f"bcrt{rng.randrange(16**6):06x}"
    gateway = str(subnet.network_address + 1)
    net = CniNetwork(conf_dir=workdir / "net.d", bridge=bridge, subnet=str(subnet), gateway=gateway)
    net.conf_dir.mkdir(parents=True)
    doc = conflist(f"critest-{bridge}", bridge, str(subnet), gateway, workdir / "ipam")
    (net.conf_dir / "10-critest.conflist").write_text(json.dumps(doc, indent=1))
    return net


def delete_bridge(net: CniNetwork) -> None:
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True, check=False)
