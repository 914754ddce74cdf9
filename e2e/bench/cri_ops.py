"""The CRI calls the workloads make, the way a kubelet makes them, with a stopwatch.

Every call goes through one `Target` (a runtime, its busybox reference, the cgroup parent and
a log directory), so the same workload code drives any runtime.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from cri.api.v1 import api_pb2
from e2e.bench.runtime import Runtime
from tests.support.cri_configs import container_config, sandbox_config

T = TypeVar("T")
# PID 1 of the container: exits 0 on SIGTERM at once, so a stop measures the runtime's path
# and not a grace period (a bare `sleep` as PID 1 ignores SIGTERM and waits for SIGKILL).
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
CALL_TIMEOUT = 180.0
NAMESPACE = "bench"  # every pod of a run is in it: cleanup never touches another's pods
_names = itertools.count()


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    runtime: Runtime
    image: str
    log_dir: Path

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def rt(self) -> Any:
        return self.runtime.client.runtime

    @property
    def images(self) -> Any:
        return self.runtime.client.images


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    id: str
    config: api_pb2.PodSandboxConfig


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """(milliseconds, result) of `call()`."""
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def is_unimplemented(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def pod_config(target: Target, name: str) -> api_pb2.PodSandboxConfig:
    config = sandbox_config(name, namespace=NAMESPACE, log_directory=str(target.log_dir / name))
    config.linux.cgroup_parent = target.runtime.cgroup_parent
    return config


def run_pod(target: Target, name: str) -> tuple[float, Pod]:
    config = pod_config(target, name)
    request = api_pb2.RunPodSandboxRequest(config=config)
    ms, resp = timed(lambda: target.rt.RunPodSandbox(request, timeout=CALL_TIMEOUT))
    return ms, Pod(id=resp.pod_sandbox_id, config=config)


def create_container(
    target: Target, pod: Pod, name: str, command: list[str] | None = None
) -> tuple[float, str]:
    config = container_config(name, target.image, command or SLEEPER, log_path=f"{name}.log")
    request = api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config
    )
    ms, resp = timed(lambda: target.rt.CreateContainer(request, timeout=CALL_TIMEOUT))
    return ms, str(resp.container_id)


def start_container(target: Target, cid: str) -> float:
    request = api_pb2.StartContainerRequest(container_id=cid)
    return timed(lambda: target.rt.StartContainer(request, timeout=CALL_TIMEOUT))[0]


def stop_container(target: Target, cid: str, grace: int = 10) -> float:
    request = api_pb2.StopContainerRequest(container_id=cid, timeout=grace)
    return timed(lambda: target.rt.StopContainer(request, timeout=CALL_TIMEOUT))[0]


def remove_container(target: Target, cid: str) -> float:
    request = api_pb2.RemoveContainerRequest(container_id=cid)
    return timed(lambda: target.rt.RemoveContainer(request, timeout=CALL_TIMEOUT))[0]


def stop_pod(target: Target, pod_id: str) -> float:
    request = api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
    return timed(lambda: target.rt.StopPodSandbox(request, timeout=CALL_TIMEOUT))[0]


def remove_pod(target: Target, pod_id: str) -> float:
    request = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    return timed(lambda: target.rt.RemovePodSandbox(request, timeout=CALL_TIMEOUT))[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class PodStart:
    """One pod with one container started: the three latencies and the ids."""

    pod: Pod
    container_id: str
    run_ms: float
    create_ms: float
    start_ms: float

    @property
    def total_ms(self) -> float:
        return self.run_ms + self.create_ms + self.start_ms


def start_pod(target: Target, name: str, containers: int = 1) -> PodStart:
    """RunPodSandbox, then CreateContainer + StartContainer `containers` times (the first
    container's latencies are reported)."""
    run_ms, pod = run_pod(target, name)
    first: tuple[float, str, float] | None = None
    for i in range(containers):
        create_ms, cid = create_container(target, pod, f"c{i}")
        start_ms = start_container(target, cid)
        first = first or (create_ms, cid, start_ms)
    assert first is not None
    create_ms, cid, start_ms = first
    return PodStart(pod=pod, container_id=cid, run_ms=run_ms, create_ms=create_ms,
                    start_ms=start_ms)  # fmt: skip


def teardown_pod(target: Target, pod_id: str) -> float:
    """StopPodSandbox + RemovePodSandbox, as the kubelet does for a deleted pod; ms."""
    return stop_pod(target, pod_id) + remove_pod(target, pod_id)


def relist(target: Target) -> float:
    """One PLEG relist: ListPodSandbox + ListContainers, unfiltered; ms."""
    pods = api_pb2.ListPodSandboxRequest()
    containers = api_pb2.ListContainersRequest()
    return timed(
        lambda: (
            target.rt.ListPodSandbox(pods, timeout=CALL_TIMEOUT),
            target.rt.ListContainers(containers, timeout=CALL_TIMEOUT),
        )
    )[0]


def pull(target: Target, image: str) -> float:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image))
    return timed(lambda: target.images.PullImage(request, timeout=600))[0]


def remove_image(target: Target, image: str) -> float:
    request = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image))
    return timed(lambda: target.images.RemoveImage(request, timeout=CALL_TIMEOUT))[0]
