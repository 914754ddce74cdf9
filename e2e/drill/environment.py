"""What a drill runs against: a berthd on private dirs, a loopback registry, a CNI bridge.

`standalone()` makes all of it (for `python -m e2e.drill`) and removes it afterwards;
`DrillEnv` can also be assembled from the test suite's fixtures.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.drill.ledger import ImageFact
from tests.support import cgroup_view as cg
from tests.support import failpoint_scrub
from tests.support import oci_builder as ob
from tests.support.berthd import Berthd
from tests.support.failpoint_node import Node, remove_cgroup_parents
from tests.support.registry import push_image, start_registry

Push = Callable[[str, str, ob.Image], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    conf_dir: Path
    bridge: str
    ipam_dir: Path


@dataclass(slots=True, kw_only=True)
class DrillEnv:
    daemon: Berthd
    node: Node
    image: str  # what containers run
    churn: list[ImageFact]  # one image per worker to pull and remove
    log_dir: Path
    cgroup_parent: str
    scrubbed: list[str] = field(default_factory=list)  # what `scrub` had to remove


def churn_image(n: int) -> ob.Image:
    """A tiny image of its own (nothing shared with busybox or the other churn images)."""
    marker = ob.file(f"etc/churn-{n}", f"churn {n}\n".encode())
    return ob.make_image([ob.layer([ob.directory("etc"), marker])], ob.ImageSpec(cmd=["sh"]))


def churn_facts(push: Push, registry_host: str, workers: int) -> list[ImageFact]:
    facts = []
    for n in range(workers):
        image = churn_image(n)
        push("drill/churn", str(n), image)
        blobs = frozenset({image.digest, *image.blobs()})
        facts.append(ImageFact(ref=f"{registry_host}/drill/churn:{n}", owner=n, blobs=blobs))
    return facts


def network(base: Path) -> Network:
    """A bridge conflist of its own (bridge, host-local, portmap), like the tests' `cni_net`."""
    octet = random.Random().randrange(100, 250)
    bridge = f"bd{octet}x{random.Random().randrange(1000)}"
    net = Network(conf_dir=base / "net.d", bridge=bridge, ipam_dir=base / "ipam")
    net.conf_dir.mkdir(parents=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"berth-drill-{bridge}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(net.ipam_dir),
                    "ranges": [[{"subnet": f"10.{octet}.9.0/24", "gateway": f"10.{octet}.9.1"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (net.conf_dir / "10-drill.conflist").write_text(json.dumps(conflist))
    return net


def make_env(
    workdir: Path, net: Network, registry_host: str, image: str, churn: list[ImageFact]
) -> DrillEnv:
    (workdir / "d").mkdir(parents=True, exist_ok=True)
    daemon = Berthd(
        workdir / "d",
        {
            "cni": {"conf_dir": str(net.conf_dir)},
            "registry": {"insecure": [registry_host], "config_path": ""},
            "log_level": "info",
        },
    )
    parent = cg.pod_parent(f"berthdrill{secrets.token_hex(3)}")
    node = Node(
        root=daemon.root,
        state=daemon.state,
        bridge=net.bridge,
        ipam_dir=net.ipam_dir,
        cgroup_parents=(parent,),
    )
    return DrillEnv(
        daemon=daemon,
        node=node,
        image=image,
        churn=churn,
        log_dir=workdir / "logs",
        cgroup_parent=parent,
    )


def scrub(workdir: Path, env: DrillEnv, spare: tuple[int, ...] = ()) -> list[str]:
    """What berthd left under ``workdir`` and in the drill's cgroups, removed (see
    `tests.support.failpoint_scrub`)."""
    keep = (env.daemon.root, env.daemon.state)
    return failpoint_scrub.scrub(workdir, env.cgroup_parent, keep=keep, spare=spare)


@contextmanager
def in_suite(
    workdir: Path, conf_dir: Path, bridge: str, registry_host: str, image: str,
    churn: list[ImageFact],
) -> Iterator[DrillEnv]:  # fmt: skip
    """An environment on the test suite's CNI network and registry; at the end whatever berthd
    left is removed, and it is an AssertionError that there was any."""
    net = Network(conf_dir=conf_dir, bridge=bridge, ipam_dir=conf_dir.parent / "ipam")
    env = make_env(workdir, net, registry_host, image, churn)
    try:
        yield env
    finally:
        leftovers = scrub(workdir, env)
        remove_cgroup_parents([env.cgroup_parent])
        assert leftovers == [], "\n".join(leftovers)


@contextmanager
def standalone(workdir: Path, workers: int, *, keep: bool = False) -> Iterator[DrillEnv]:
    """Registry, network and berthd under ``workdir``; all removed at the end."""
    with ExitStack() as stack:
        registry = start_registry(workdir / "registry")
        stack.callback(registry.stop)

        def push(repo: str, tag: str, image: ob.Image) -> Any:
            return push_image(registry.url, repo, tag, image)

        push("library/busybox", "latest", ob.busybox_image())
        net = network(workdir / "cni")
        stack.callback(
            subprocess.run, ["ip", "link", "del", net.bridge], capture_output=True, check=False
        )
        churn = churn_facts(push, registry.host, workers)
        env = make_env(
            workdir, net, registry.host, f"{registry.host}/library/busybox:latest", churn
        )
        if not keep:
            stack.callback(shutil.rmtree, workdir, True)
        stack.callback(remove_cgroup_parents, [env.cgroup_parent])
        spare = (registry.process.pid,)
        stack.callback(lambda: env.scrubbed.extend(scrub(workdir, env, spare)))
        yield env
