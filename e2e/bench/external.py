"""A runtime someone else started: only its CRI endpoint (and, if given, its daemon's pid).

`--endpoint NAME=unix:///path[,pid=N]` drives it with the same workloads. It must be able to
pull from the run's loopback registry over plain HTTP (127.0.0.1:<port>, printed at start).
Without a pid the memory and CPU figures stay empty; shims are not looked for (we cannot tell
its shims from anyone else's), and nothing of it is stopped or swept — only the pods this run
made are removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from e2e.bench.cri_ops import NAMESPACE
from e2e.bench.runtime import wait_ready

READY_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    name: str
    endpoint: str
    pid: int | None = None


def parse_endpoint(text: str) -> EndpointSpec:
    """`NAME=unix:///path[,pid=N]`; ValueError naming what is wrong."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{text!r} is not NAME=ENDPOINT[,pid=N]")
    endpoint, _, extra = rest.partition(",")
    pid = None
    if extra:
        key, _, value = extra.partition("=")
        if key != "pid" or not value.isdigit():
            raise ValueError(f"{extra!r} in {text!r}: only pid=N may follow the endpoint")
        pid = int(value)
    if endpoint.startswith("/"):
        endpoint = f"unix://{endpoint}"
    return EndpointSpec(name=name, endpoint=endpoint, pid=pid)


class ExternalRuntime:
    def __init__(self, spec: EndpointSpec, *, cgroup_parent: str = "") -> None:
        self.name = spec.name
        self.endpoint = spec.endpoint
        self.cgroup_parent = cgroup_parent
        self._pid = spec.pid
        self._client: CriClient | None = None

    @property
    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(self.endpoint, timeout=180)
        return self._client

    def start(self) -> None:
        wait_ready(self.client, READY_TIMEOUT)

    def daemon_pid(self) -> int | None:
        return self._pid

    def helper_pids(self) -> list[int]:
        return []

    def shim_pids(self) -> list[int]:
        return []

    def disk_usage(self) -> int:
        return 0

    def log_path(self) -> Path | None:
        return None

    def remove_all_pods(self) -> None:
        """Only the pods of this run (their namespace), never anyone else's."""
        rt = self.client.runtime
        for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items:
            if pod.metadata.namespace == NAMESPACE:
                rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id))
                rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def sweep(self) -> list[str]:
        return []
