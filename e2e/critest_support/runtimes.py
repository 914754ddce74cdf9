"""What the run needs from a runtime under test, and the parts both runtimes share."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import grpc

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient


class RuntimeUnderTest(Protocol):
    """A started CRI runtime. `stop` ends its daemon by PID and is idempotent."""

    @property
    def name(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """unix:///path/to.sock"""
        ...

    @property
    def log_path(self) -> Path: ...

    @property
    def pid(self) -> int:
        """The daemon's PID (a child of this process)."""
        ...

    def stop(self) -> None: ...


def socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def wait_cri_ready(endpoint: str, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until `Version` answers on `endpoint`; `alive()` false means the daemon died."""
    deadline = time.monotonic() + timeout
    with CriClient(endpoint, timeout=5) as client:
        while True:
            try:
                client.runtime.Version(api_pb2.VersionRequest())
                return
            except grpc.RpcError:
                if not alive():
                    raise RuntimeError(f"the runtime behind {endpoint} exited") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{endpoint} did not answer Version") from None
                time.sleep(0.1)  # polling a socket that has no readiness event


def drain(endpoint: str) -> int:
    """Stop and remove every pod sandbox and container (what critest left); returns the count."""
    removed = 0
    with CriClient(endpoint, timeout=60) as client:
        with contextlib.suppress(grpc.RpcError):
            pods = client.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
            for pod in pods:
                removed += _remove_pod(client, pod.id)
        with contextlib.suppress(grpc.RpcError):
            req = api_pb2.ListContainersRequest()
            for ctr in client.runtime.ListContainers(req).containers:
                removed += _call(client, "RemoveContainer", container_id=ctr.id)
    return removed


def _remove_pod(client: CriClient, pod_id: str) -> int:
    _call(client, "StopPodSandbox", pod_sandbox_id=pod_id)
    return _call(client, "RemovePodSandbox", pod_sandbox_id=pod_id)


def _call(client: CriClient, method: str, **fields: str) -> int:
    request = getattr(api_pb2, f"{method}Request")(**fields)
    try:
        getattr(client.runtime, method)(request)
    except grpc.RpcError:
        return 0
    return 1
