"""CNI with the real plugins (/usr/lib/cni): bridge + host-local + portmap, as root.

Every test uses a bridge and a /24 unique to this module and a host-local data dir in tmp.
After each test no firewall rule of the test network may remain. At the end of the module
portmap's shared scaffolding (CNI-HOSTPORT-* chains, which the plugin keeps across pods) is
removed if it did not exist before and nobody uses it, and every rule that belongs to no CNI
network must be as it was before, so a parallel run of another CNI user does not disturb the
comparison.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
import shlex
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cri import netns, netstat, sysctl
from cri.cni import CniManager, PodNetwork, PortMapping
from cri.cni.invoke import CniPluginError

pytestmark = [pytest.mark.root, pytest.mark.cni]

PLUGIN_DIR = Path("/usr/lib/cni")
BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
SCAFFOLD = "CNI-HOSTPORT-"


def _save(tool: str) -> list[str]:
    return subprocess.run([tool], capture_output=True, text=True, check=True).stdout.splitlines()


_OWNER = re.compile(r'name: \\"([^\\"]+)\\"')
_JUMP = re.compile(r"-j (CNI-\S+)")


def _entries() -> list[tuple[str, str, str]]:
    """(tool, table, line) for every rule and non-default chain; empty tables count as absent."""
    found: list[tuple[str, str, str]] = []
    for tool in ("iptables-save", "ip6tables-save"):
        table = ""
        for line in _save(tool):
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chain, policy = line[1:].split()[:2]
                if chain not in BUILTIN_CHAINS or policy != "ACCEPT":
                    found.append((tool, table, f":{chain} {policy}"))
            elif line.startswith("-A"):
                found.append((tool, table, line))
    return found


def _chain(line: str) -> str:
    return line[1:].split()[0] if line.startswith(":") else line.split()[1]


def firewall() -> dict[str | None, set[str]]:
    """Rules grouped by the CNI network that made them (from the plugins' comments and the
    chains those commented rules jump to); None holds everything else. Grouping keeps other
    CNI users on the machine (a parallel test run) out of our comparisons."""
    entries = _entries()
    chain_owner: dict[tuple[str, str, str], str] = {}
    for tool, table, line in entries:
        owner = _OWNER.search(line)
        if owner is None or not line.startswith("-A"):
            continue
        jump = _JUMP.search(line)
        for chain in (_chain(line), jump[1] if jump else ""):
            if chain.startswith("CNI-") and not chain.startswith(SCAFFOLD):
                chain_owner[(tool, table, chain)] = owner[1]
    grouped: dict[str | None, set[str]] = {}
    for tool, table, line in entries:
        owner = _OWNER.search(line)
        key = owner[1] if owner else chain_owner.get((tool, table, _chain(line)))
        grouped.setdefault(key, set()).add(f"{tool} {table} {line}")
    return grouped


def unowned_without_scaffolding() -> set[str]:
    return {rule for rule in firewall().get(None, set()) if SCAFFOLD not in rule}


def scaffolding_exists() -> bool:
    return SCAFFOLD in "\n".join(firewall().get(None, set()))


def remove_portmap_scaffolding() -> None:
    """Delete portmap's shared chains and the jumps to them (only if no pod uses them)."""
    for tool in ("iptables", "ip6tables"):
        lines = _save(f"{tool}-save")
        if any(line.startswith(f"-A {SCAFFOLD}DNAT ") for line in lines):
            continue
        for line in lines:
            words = shlex.split(line)
            if line.startswith("-A") and words[1] in BUILTIN_CHAINS and SCAFFOLD in line:
                subprocess.run([tool, "-t", "nat", "-D", *words[1:]], check=True)
        for chain in ("DNAT", "MASQ", "SETMARK"):
            for flag in ("-F", "-X"):
                subprocess.run([tool, "-t", "nat", flag, SCAFFOLD + chain], capture_output=True)


def remove_empty_nat_tables(existed: set[str]) -> None:
    for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
        lines = _save(tool)
        empty = not any(line.startswith("-A") for line in lines)
        if f"{family} nat" not in existed and empty and "*nat" in lines:
            subprocess.run(["nft", "delete", "table", family, "nat"], check=True)


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return {line.removeprefix("table ").strip() for line in out.stdout.splitlines()}


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeNet:
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    ipam_dir: Path
    conf_dir: Path
    root: Path

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def conflist(self, *extra_plugins: dict[str, Any]) -> dict[str, Any]:
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(self.subnet)}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.ipam_dir),
            },
        }
        return {"cniVersion": "1.0.0", "name": self.name, "plugins": [bridge, *extra_plugins]}

    def leases(self) -> list[str]:
        lease_dir = self.ipam_dir / self.name
        if not lease_dir.exists():
            return []
        return sorted(p.name for p in lease_dir.iterdir() if p.name[0].isdigit())

    def veths(self) -> list[str]:
        out = subprocess.run(
            ["ip", "-o", "link", "show", "master", self.bridge], capture_output=True, text=True
        ).stdout
        return [line.split(":")[1].strip() for line in out.splitlines()]


def _free_subnet() -> ipaddress.IPv4Network:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(50):
        subnet = ipaddress.IPv4Network(f"10.123.{secrets.randbelow(256)}.0/24")
        if str(subnet.network_address)[:-2] not in routes:
            return subnet
    raise RuntimeError("no free 10.123.x.0/24 subnet")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeNet]:
    root = tmp_path_factory.mktemp("cni")
    tag = secrets.token_hex(3)
    test_net = BridgeNet(
        name=f"bt{tag}",
        bridge=f"bt{tag}",
        subnet=_free_subnet(),
        ipam_dir=root / "ipam",
        conf_dir=root / "net.d",
        root=root,
    )
    test_net.conf_dir.mkdir()
    (test_net.conf_dir / "10-test.conflist").write_text(
        json.dumps(test_net.conflist({"type": "portmap", "capabilities": {"portMappings": True}}))
    )
    rules_before, tables_before = unowned_without_scaffolding(), nft_tables()
    scaffolding_before = scaffolding_exists()
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forward_before = forward.read_text()
    yield test_net
    subprocess.run(["ip", "link", "del", test_net.bridge], capture_output=True)
    if not scaffolding_before:
        remove_portmap_scaffolding()
    remove_empty_nat_tables(tables_before)
    forward.write_text(forward_before)  # the bridge plugin (isGateway) turned it on
    netns.unmount(root / "pins")
    assert test_net.name not in firewall()
    assert unowned_without_scaffolding() == rules_before


@dataclass
class Pods:
    """Creates pod netns pins and tracks them, so every test removes what it made."""

    net: BridgeNet
    manager: CniManager
    made: list[PodNetwork]

    def new(self, *, port_mappings: tuple[PortMapping, ...] = ()) -> PodNetwork:
        pod_id = secrets.token_hex(8)
        pins = netns.create_namespaces(self.net.root / "pins" / pod_id, ["net"])
        pod = PodNetwork(
            id=pod_id,
            name=f"pod-{pod_id[:4]}",
            namespace="test",
            uid=f"uid-{pod_id}",
            netns=pins["net"],
            port_mappings=port_mappings,
        )
        self.made.append(pod)
        return pod


@pytest.fixture
async def pods(net: BridgeNet) -> AsyncIterator[Pods]:
    manager = CniManager(net.conf_dir, [PLUGIN_DIR], net.root / "cache", 30.0)
    tracker = Pods(net=net, manager=manager, made=[])
    yield tracker
    for pod in tracker.made:
        await manager.delete(pod)  # before the netns goes: bridge needs it for its rules
        assert pod.netns is not None
        netns.remove_namespaces([pod.netns])
    assert net.leases() == [] and net.veths() == []
    assert net.name not in firewall()


def ping(address: str, *, netns_pin: Path | None = None) -> None:
    argv = ["/bin/busybox", "ping", "-c1", "-W2", address]
    if netns_pin is not None:
        argv = ["nsenter", f"--net={netns_pin}", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_pod_gets_an_address_that_answers_and_delete_frees_it(
    net: BridgeNet, pods: Pods
) -> None:
    pod = pods.new()
    result = await pods.manager.add(pod)
    [address] = result.ips
    assert ipaddress.ip_address(address) in net.subnet
    assert result.interfaces and result.interfaces[-1].sandbox == str(pod.netns)
    assert net.leases() == [address]
    assert len(net.veths()) == 1
    assert pod.netns is not None
    before = netstat.read_interface_stats(pod.netns)["eth0"]
    await asyncio.to_thread(ping, address)
    after = netstat.read_interface_stats(pod.netns)
    assert sorted(after) == ["eth0", "lo"]
    assert after["eth0"].rx_packets > before.rx_packets
    assert after["eth0"].tx_bytes > before.tx_bytes
    await pods.manager.delete(pod)
    assert net.leases() == [] and net.veths() == []
    assert pods.manager.cached_ids() == []
    await pods.manager.delete(pod)  # again: idempotent


async def test_two_pods_reach_each_other(pods: Pods) -> None:
    first, second = pods.new(), pods.new()
    ip1 = (await pods.manager.add(first)).ips[0]
    ip2 = (await pods.manager.add(second)).ips[0]
    assert ip1 != ip2
    assert first.netns is not None and second.netns is not None
    await asyncio.to_thread(ping, ip2, netns_pin=first.netns)
    await asyncio.to_thread(ping, ip1, netns_pin=second.netns)


async def test_host_port_reaches_a_listener_in_the_pod(net: BridgeNet, pods: Pods) -> None:
    host_port = 20000 + secrets.randbelow(10000)
    pod = pods.new(port_mappings=(PortMapping(container_port=8080, host_port=host_port),))
    await pods.manager.add(pod)
    assert pod.netns is not None
    pin = pod.netns
    server = netns.run_in_netns(pin, lambda: socket.create_server(("0.0.0.0", 8080)))
    with server:
        client = await asyncio.to_thread(
            socket.create_connection, (net.gateway, host_port), timeout=5
        )
        with client, server.accept()[0] as accepted:
            client.sendall(b"hello pod")
            assert accepted.recv(9) == b"hello pod"
    assert f"--dports {host_port}" in "\n".join(firewall()[net.name])
    await pods.manager.delete(pod)
    assert net.name not in firewall()


async def test_failing_plugin_after_bridge_leaves_nothing_behind(
    net: BridgeNet, pods: Pods, tmp_path: Path
) -> None:
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    failer = fake_dir / "failer"
    failer.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        'if [ "$CNI_COMMAND" = ADD ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","code":999,"msg":"refused by test"}\'\n  exit 1\nfi\n'
    )
    failer.chmod(0o755)
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-fail.conflist").write_text(json.dumps(net.conflist({"type": "failer"})))
    manager = CniManager(conf_dir, [fake_dir, PLUGIN_DIR], tmp_path / "cache", 30.0)
    pod = pods.new()
    with pytest.raises(CniPluginError, match=r"failer ADD.*refused by test"):
        await manager.add(pod)
    assert net.veths() == [] and net.leases() == []
    assert manager.cached_ids() == []
    assert pod.netns is not None
    netns.remove_namespaces([pod.netns])
    assert not pod.netns.exists()


async def test_delete_after_restart_and_config_change_uses_the_cache(
    net: BridgeNet, pods: Pods, tmp_path: Path
) -> None:
    pod = pods.new(port_mappings=(PortMapping(container_port=80, host_port=20000 + 7),))
    await pods.manager.add(pod)
    # berthd restarts with a config dir that no longer holds the network.
    empty_conf = tmp_path / "empty"
    empty_conf.mkdir()
    restarted = CniManager(empty_conf, [PLUGIN_DIR], net.root / "cache", 30.0)
    assert not restarted.status().ready
    cached = restarted.cached_result(pod.id)
    assert cached is not None and ipaddress.ip_address(cached.ips[0]) in net.subnet
    await restarted.delete_cached(pod.id)  # what recovery does for a pod it has no row for
    assert net.veths() == [] and net.leases() == []
    assert restarted.cached_ids() == []
    assert net.name not in firewall()


async def test_net_sysctl_inside_an_attached_pod(pods: Pods) -> None:
    pod = pods.new()
    await pods.manager.add(pod)
    assert pod.netns is not None
    wanted = {"net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.ip_local_port_range": "20000 30000"}
    sysctl.apply_sysctls({"net": pod.netns}, wanted)
    paths = [str(sysctl.proc_path(name)) for name in wanted]
    argv = ["nsenter", f"--net={pod.netns}", "cat", *paths]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    out = done.stdout
    assert [" ".join(line.split()) for line in out.splitlines()] == list(wanted.values())


async def test_bridge_only_network_passes_check(net: BridgeNet, pods: Pods, tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-bridge.conflist").write_text(json.dumps(net.conflist()))
    manager = CniManager(conf_dir, [PLUGIN_DIR], net.root / "cache", 30.0)
    pod = pods.new()
    await manager.add(pod)
    await manager.check(pod)
    await manager.delete(pod)
