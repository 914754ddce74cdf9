"""pytest fixtures for running real pods: a test CNI bridge and a berthd wired to a registry.

- `cni_net` (session): a bridge conflist on a bridge and subnet of its own, host-local leases in
  a temporary dir, so tests never touch a real node's networks.
- `pod_berthd`: berthd with that network, the session registry as an insecure registry, and
  the busybox image pulled.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cri.api.v1 import api_pb2
from tests.support.berthd import Berthd
from tests.support.fixtures_registry import LocalRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class CniNet:
    conf_dir: Path
    bridge: str
    subnet: str
    gateway: str


@pytest.fixture(scope="session")
def cni_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CniNet]:
    base = tmp_path_factory.mktemp("cni")
    octet = random.Random().randrange(100, 250)
    bridge = f"bt{octet}x{random.Random().randrange(1000)}"
    net = CniNet(
        conf_dir=base / "net.d",
        bridge=bridge,
        subnet=f"10.{octet}.7.0/24",
        gateway=f"10.{octet}.7.1",
    )
    net.conf_dir.mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"berth-test-{bridge}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(base / "ipam"),
                    "ranges": [[{"subnet": net.subnet, "gateway": net.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (net.conf_dir / "10-test.conflist").write_text(json.dumps(conflist))
    yield net
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


@pytest.fixture
def pod_berthd(berthd_dir: Path, cni_net: CniNet, registry: LocalRegistry) -> Iterator[Berthd]:
    daemon = Berthd(
        berthd_dir,
        {
            "cni": {"conf_dir": str(cni_net.conf_dir)},
            "registry": {"insecure": [registry.host], "config_path": ""},
        },
    )
    daemon.start()
    daemon.client.images.PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=registry.ref()))
    )
    yield daemon
    if daemon.proc is not None:  # remove what a failed test left, so nothing leaks
        for pod in daemon.client.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items:
            daemon.client.runtime.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id)
            )
    code = daemon.stop()  # a test may have stopped it already: then this is 0
    assert code == 0, f"berthd exited {code}:\n{daemon.logs()}"
