"""A berthd wired to failpoints, with the calls a fault test makes and the checks it ends with.

`FaultHarness` holds one berthd whose runc and CNI plugins are failpoint wrappers, the pods'
log dir and cgroup parent, and a `Node` to look for leaks. Every CRI call has a deadline.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cri.api.v1 import api_pb2
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.failpoint_node import Node, NodeState, problems, store_view
from tests.support.failpoints import Failpoints

DEADLINE = 30.0


@dataclass(slots=True)
class FaultHarness:
    daemon: Berthd
    points: Failpoints
    node: Node
    image: str
    log_dir: Path
    cgroup_parent: str
    baseline: NodeState | None = None
    _names: int = field(default=0, init=False)

    @property
    def rt(self) -> Any:
        return self.daemon.client.runtime

    def call(self, method: str, request: Any, timeout: float = DEADLINE) -> Any:
        stub = self.daemon.client.images if method in IMAGE_RPCS else self.rt
        return getattr(stub, method)(request, timeout=timeout)

    def fresh_name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}-{self._names}-{secrets.token_hex(2)}"

    def pod_config(self, name: str) -> api_pb2.PodSandboxConfig:
        config = sandbox_config(name, log_directory=str(self.log_dir / name))
        config.linux.cgroup_parent = self.cgroup_parent
        return config

    def run_pod(self, name: str, timeout: float = DEADLINE) -> str:
        request = api_pb2.RunPodSandboxRequest(config=self.pod_config(name))
        return str(self.call("RunPodSandbox", request, timeout).pod_sandbox_id)

    def create(self, pod_id: str, name: str, command: list[str], timeout: float = DEADLINE) -> str:
        pod = self.call("PodSandboxStatus", api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        sandbox = self.pod_config(pod.status.metadata.name)
        sandbox.metadata.CopyFrom(pod.status.metadata)
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id,
            config=container_config(name, self.image, command, log_path=f"{name}.log"),
            sandbox_config=sandbox,
        )
        return str(self.call("CreateContainer", request, timeout).container_id)

    def start(self, cid: str, timeout: float = DEADLINE) -> None:
        self.call("StartContainer", api_pb2.StartContainerRequest(container_id=cid), timeout)

    def status(self, cid: str) -> api_pb2.ContainerStatus:
        request = api_pb2.ContainerStatusRequest(container_id=cid)
        status: api_pb2.ContainerStatus = self.call("ContainerStatus", request).status
        return status

    def wait_state(self, cid: str, state: int, timeout: float = 15.0) -> api_pb2.ContainerStatus:
        deadline = time.monotonic() + timeout
        status = self.status(cid)
        while status.state != state and time.monotonic() < deadline:
            time.sleep(0.05)
            status = self.status(cid)
        return status

    def remove_pod(self, pod_id: str) -> None:
        self.call("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        self.call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_everything(self) -> None:
        """Remove every pod (and so every container); what a failed test left, too."""
        for pod in self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items:
            self.call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))

    def leaks(self, allowed_blobs: Iterable[str] = ()) -> list[str]:
        """Disagreements between the node and what berthd lists (none is the goal)."""
        return problems(
            self.node,
            self.node.inspect(),
            store_view(self.daemon.client),
            allowed_blobs=allowed_blobs,
            baseline=self.baseline,
        )

    def probe(self) -> None:
        """A healthy berthd runs another pod with a container, execs in it, removes it."""
        pod_id = self.run_pod(self.fresh_name("probe"))
        cid = self.create(pod_id, "probe", ["sleep", "1000"])
        self.start(cid)
        result = self.call(
            "ExecSync", api_pb2.ExecSyncRequest(container_id=cid, cmd=["echo", "ok"], timeout=10)
        )
        assert (result.exit_code, result.stdout) == (0, b"ok\n")
        self.remove_pod(pod_id)

    def berthd_log(self, since: int = 0) -> str:
        return self.daemon.logs()[since:]


IMAGE_RPCS = frozenset({"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"})


def none(problems: list[str]) -> None:
    """Assert that there are no problems, printing every one of them if there are."""
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def error_of(call: Any) -> grpc.RpcError:
    """The RpcError a call raises (AssertionError if it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded; it should have failed")


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]
