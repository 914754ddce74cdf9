"""One CNI network per runtime: a bridge of its own, host-local leases in our work dir.

Both runtimes get the same plugin chain (bridge + host-local + portmap, no masquerade) so
neither pays for iptables work the other skips; only the bridge name and subnet differ.
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeNet:
    name: str
    bridge: str  # at most 15 characters (IFNAMSIZ)
    subnet: str
    gateway: str
    ipam_dir: Path


def pick_net(label: str, ipam_dir: Path, rng: random.Random | None = None) -> BridgeNet:
    """A bridge name and a /22 (room for 110+ pods) unlikely to collide with anyone else's."""
    rng = rng or random.Random()
    second, third = rng.randrange(150, 250), rng.randrange(0, 63) * 4
    bridge = f"bb{label[:3]}{rng.randrange(10**5):05d}"
    return BridgeNet(
        name=f"bench-{bridge}",
        bridge=bridge,
        subnet=f"10.{second}.{third}.0/22",
        gateway=f"10.{second}.{third}.1",
        ipam_dir=ipam_dir,
    )


def conflist(net: BridgeNet) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(net.ipam_dir),
                    "ranges": [[{"subnet": net.subnet, "gateway": net.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_conf_dir(conf_dir: Path, net: BridgeNet) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "10-bench.conflist"
    path.write_text(json.dumps(conflist(net), indent=1))
    return path


def delete_bridge(bridge: str) -> None:
    """Remove the bridge if it exists (veths left on it go when their netns goes)."""
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
