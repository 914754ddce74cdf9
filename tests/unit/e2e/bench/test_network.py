from __future__ import annotations

import ipaddress
import random
from pathlib import Path

from e2e.bench import network


def test_pick_net_names_and_subnet() -> None:
    for seed in range(50):
        net = network.pick_net("containerd", Path("/x/ipam"), random.Random(seed))
        assert len(net.bridge) <= 15
        subnet = ipaddress.ip_network(net.subnet)
        assert subnet.prefixlen == 22 and subnet.num_addresses >= 4 * 110
        assert ipaddress.ip_address(net.gateway) in subnet


def test_conflist_chain(tmp_path: Path) -> None:
    net = network.pick_net("berth", tmp_path / "ipam", random.Random(1))
    doc = network.conflist(net)
    assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap"]
    bridge = doc["plugins"][0]
    assert bridge["bridge"] == net.bridge and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    path = network.write_conf_dir(tmp_path / "net.d", net)
    assert path.read_text().count(net.subnet) == 1
