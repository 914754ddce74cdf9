"""Fixtures for fault tests: one berthd per test module whose runc and CNI plugins are
failpoint wrappers (unarmed between tests), with the session's registry and test network."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.harness import FaultHarness
from tests.support import cgroup_view as cg
from tests.support.berthd import Berthd
from tests.support.failpoint_node import Node, remove_cgroup_parents
from tests.support.failpoint_scrub import scrub
from tests.support.failpoints import Failpoints
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry
from tests.support.timing import scaled

# Seconds per plugin call: small, so a hanging plugin is found quickly.
CNI_TIMEOUT = scaled(2.0)


def fault_settings(
    points: Failpoints, cni_net: CniNet, registry: LocalRegistry
) -> dict[str, object]:
    return {
        "runtimes": {"runc": {"path": str(points.runc_wrapper())}},
        "cni": {
            "conf_dir": str(cni_net.conf_dir),
            "plugin_dirs": [str(points.cni_dir()), "/usr/lib/cni"],
            "timeout": CNI_TIMEOUT,
        },
        "registry": {"insecure": [registry.host], "config_path": ""},
    }


def make_harness(
    base: Path,
    cni_net: CniNet,
    registry: LocalRegistry,
    settings: Mapping[str, object] | None = None,
) -> FaultHarness:
    """A harness (not started) whose berthd gets ``settings`` over the failpoint ones."""
    points = Failpoints(base / "fp")
    (base / "d").mkdir()
    daemon = Berthd(base / "d", {**fault_settings(points, cni_net, registry), **(settings or {})})
    parent = cg.pod_parent(f"berthfault{secrets.token_hex(3)}")
    node = Node(
        root=daemon.root,
        state=daemon.state,
        bridge=cni_net.bridge,
        ipam_dir=cni_net.conf_dir.parent / "ipam",
        cgroup_parents=(parent,),
    )
    return FaultHarness(
        daemon=daemon,
        points=points,
        node=node,
        image=registry.ref(),
        log_dir=base / "logs",
        cgroup_parent=parent,
    )


def start_harness(harness: FaultHarness) -> None:
    harness.daemon.start()
    harness.call(
        "PullImage", api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=harness.image))
    )
    harness.baseline = harness.node.inspect()


def stop_harness(harness: FaultHarness) -> None:
    """Remove what the tests left through berthd and stop it; if berthd cannot do that, clean
    up around it (and fail: berthd leaked what had to be scrubbed)."""
    harness.points.disarm()
    daemon = harness.daemon
    code: int | None = None
    try:
        if daemon.proc is not None and daemon.proc.poll() is None:
            harness.remove_everything()
        code = daemon.stop()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        daemon.proc = None
        keep = (daemon.root, daemon.state)
        scrubbed = scrub(daemon.workdir.parent, harness.cgroup_parent, keep=keep)
        remove_cgroup_parents([harness.cgroup_parent])
    assert code == 0, f"berthd exited {code}:\n{daemon.logs()[-3000:]}"
    assert scrubbed == [], "berthd left behind:\n" + "\n".join(scrubbed)


@pytest.fixture(scope="module")
def fault_harness(
    tmp_path_factory: pytest.TempPathFactory, cni_net: CniNet, registry: LocalRegistry
) -> Iterator[FaultHarness]:
    harness = make_harness(tmp_path_factory.mktemp("fh"), cni_net, registry)
    start_harness(harness)
    yield harness
    stop_harness(harness)


@pytest.fixture
def harness(fault_harness: FaultHarness) -> Iterator[FaultHarness]:
    """The module's harness, unarmed; whatever a test leaves is removed after it."""
    fault_harness.points.disarm()
    yield fault_harness
    fault_harness.points.disarm()
    proc = fault_harness.daemon.proc
    if proc is not None and proc.poll() is None:
        fault_harness.remove_everything()
