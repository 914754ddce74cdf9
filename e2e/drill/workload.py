"""The drill's workload: threads acting like a busy kubelet on their own pods and containers.

Each worker loops: wait at the gate, pick an action its objects allow (seeded, per worker),
send one CRI call, write the outcome into the ledger. Pods get sleepers (`sleep`, stopped by
SIGKILL after the grace period: exit 137) and exiters (`sh -c "sleep s; exit k"`); ExecSync
checks its exit code at once; each worker pulls and removes a churn image of its own.

Whether a failed call counts as "maybe" is decided by `Link`: the controller bumps `epoch`
and sets `down` before it kills berthd, and clears `down` only after the restart, so a call
that overlapped a crash in any way is never taken for a clean failure.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

from cri.api.v1 import api_pb2, api_pb2_grpc
from e2e.drill.ledger import Ack, ContainerFact, ImageFact, Ledger, PodFact
from tests.support.cri_configs import container_config, sandbox_config

CALL_DEADLINE: Final = 20.0
SLEEPER: Final = ("sleep", "100000")


class Client:
    """CRI stubs on a channel of its own. Its subchannel is not shared: gRPC otherwise reuses
    one per address across channels, and the one that failed while berthd was down would keep
    answering "connection refused" through its reconnect backoff after the restart."""

    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(
            f"unix://{socket}",
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_receive_message_length", 16 << 20),
            ],
        )
        self.runtime: Any = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images: Any = api_pb2_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


class Link:
    """The current client; swapped by the controller around each restart."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.epoch = 0
        self.down = False
        self._lock = threading.Lock()
        self._client = Client(socket)

    @property
    def client(self) -> Client:
        with self._lock:
            return self._client

    def going_down(self) -> None:
        with self._lock:
            self.epoch += 1
            self.down = True

    def back_up(self) -> None:
        with self._lock:
            old, self._client = self._client, Client(self.socket)
            self.down = False
        old.close()

    def close(self) -> None:
        self._client.close()


class Gate:
    """Workers pass while it is open; the controller closes it and waits until all park."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self._parked = 0
        self.stopping = False

    def passage(self) -> bool:
        """Block while closed; False once the drill is over."""
        with self._cond:
            if not self._open:
                self._parked += 1
                self._cond.notify_all()
                while not self._open and not self.stopping:
                    self._cond.wait()
                self._parked -= 1
            return not self.stopping

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._open = False

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def wait_parked(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._parked >= count, timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    image: str  # what containers run (never removed)
    log_dir: Path
    cgroup_parent: str
    max_pods: int = 2  # per worker
    max_containers: int = 3  # per pod


@dataclass(slots=True)
class Worker:
    index: int
    seed: int
    link: Link
    gate: Gate
    ledger: Ledger
    setting: Setting
    churn: ImageFact
    rng: random.Random = field(init=False)
    names: int = 0
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def launch(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"drill-worker-{self.index}")
        self.thread.start()

    def run(self) -> None:
        while self.gate.passage():
            action = self.choose()
            try:
                action()
            except Exception as exc:  # a bug in the drill must not hang the controller
                self.ledger.violation(f"worker {self.index}: drill error {exc!r}")

    # -- calls ---------------------------------------------------------------------------------

    def call(
        self, op: str, request: Any, *, ctr: ContainerFact | None = None
    ) -> tuple[Ack, Any, grpc.RpcError | None]:
        """(outcome, response, error) of one call; counted in the ledger. A clean failure (not
        caused by a crash) is a violation, except for a container whose shim was killed."""
        epoch = self.link.epoch
        service = "images" if op in ("PullImage", "RemoveImage") else "runtime"
        try:
            stub = getattr(self.link.client, service)
            response = getattr(stub, op)(request, timeout=CALL_DEADLINE)
        except (grpc.RpcError, ValueError) as exc:
            crashed = self.link.down or self.link.epoch != epoch
            error = exc if isinstance(exc, grpc.RpcError) else None
            ack = Ack.MAYBE if crashed else Ack.NO
            self.ledger.count(op, ack)
            if ack is Ack.NO and not (ctr is not None and ctr.shim_killed):
                self.unexpected(op, error)
            return ack, None, error
        self.ledger.count(op, Ack.YES)
        return Ack.YES, response, None

    def unexpected(self, op: str, error: grpc.RpcError | None) -> None:
        """A valid call failed while berthd was up."""
        code = error.code().name if error else "closed channel"
        details = error.details() if error else ""
        self.ledger.violation(f"worker {self.index}: {op} failed with {code}: {details}")

    # -- choosing ------------------------------------------------------------------------------

    def choose(self) -> Callable[[], None]:
        mine_pods = list(self.ledger.live_pods(self.index))
        ready = [p for p in mine_pods if p.created is Ack.YES and p.stopped is Ack.NO]
        ctrs = list(self.ledger.live_containers(self.index))
        created = [
            c for c in ctrs
            if c.started is Ack.NO and c.created is Ack.YES and c.pod.stopped is Ack.NO
        ]  # fmt: skip
        running = [c for c in ctrs if c.started is Ack.YES and c.stopped is Ack.NO]
        sleepers = [c for c in running if c.exit_code is None and not c.shim_killed]
        roomy = [p for p in ready if sum(c.pod is p for c in ctrs) < self.setting.max_containers]
        options: list[tuple[float, Callable[[], None]]] = [
            (2.0 if len(mine_pods) < self.setting.max_pods else 0.0, self.run_pod),
            (3.0 if roomy else 0.0, lambda: self.create(self.rng.choice(roomy))),
            (3.0 if created else 0.0, lambda: self.start(self.rng.choice(created))),
            (2.0 if sleepers else 0.0, lambda: self.exec(self.rng.choice(sleepers))),
            (1.0 if running else 0.0, lambda: self.stop(self.rng.choice(running))),
            (1.5 if ctrs else 0.0, lambda: self.remove(self.rng.choice(ctrs))),
            (0.4 if ready else 0.0, lambda: self.stop_pod(self.rng.choice(ready))),
            (0.6 if mine_pods else 0.0, lambda: self.remove_pod(self.rng.choice(mine_pods))),
            (0.7, self.pull_or_remove_image),
        ]
        weights = [w for w, _ in options]
        return self.rng.choices([a for _, a in options], weights=weights)[0]

    # -- actions -------------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}-w{self.index}-{self.names}"

    def pod_config(self, fact: PodFact) -> api_pb2.PodSandboxConfig:
        config = sandbox_config(fact.name, log_directory=str(self.setting.log_dir / fact.name))
        config.linux.cgroup_parent = self.setting.cgroup_parent
        config.metadata.uid = f"uid-{fact.name}"  # stable: the drill can rebuild it later
        return config

    def run_pod(self) -> None:
        fact = self.ledger.add_pod(PodFact(name=self.fresh("pod"), owner=self.index))
        ack, resp, _ = self.call(
            "RunPodSandbox", api_pb2.RunPodSandboxRequest(config=self.pod_config(fact))
        )
        fact.created = ack
        if resp is not None:
            fact.id = resp.pod_sandbox_id

    def create(self, pod: PodFact) -> None:
        command: tuple[str, ...]
        if self.rng.random() < 0.5:
            command, code, runs_for = SLEEPER, None, 0.0
        else:
            runs_for = round(self.rng.uniform(0.2, 4.0), 1)
            code = self.rng.choice([0, 1, 3, 42])
            command = ("sh", "-c", f"sleep {runs_for}; exit {code}")
        fact = self.ledger.add_container(
            ContainerFact(
                name=self.fresh("ctr"), pod=pod, command=command, exit_code=code, runs_for=runs_for
            )
        )
        config = container_config(
            fact.name, self.setting.image, list(command), log_path=f"{fact.name}.log"
        )
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=self.pod_config(pod)
        )
        ack, resp, _ = self.call("CreateContainer", request)
        fact.created = ack
        if resp is not None:
            fact.id = resp.container_id

    def start(self, ctr: ContainerFact) -> None:
        request = api_pb2.StartContainerRequest(container_id=ctr.id)
        ack, _, _ = self.call("StartContainer", request, ctr=ctr)
        ctr.started = ack if ack is not Ack.NO else ctr.started
        ctr.started_at = time.monotonic()

    def exec(self, ctr: ContainerFact) -> None:
        code = self.rng.choice([0, 2, 7])
        request = api_pb2.ExecSyncRequest(
            container_id=ctr.id, cmd=["sh", "-c", f"exit {code}"], timeout=10
        )
        _, resp, _ = self.call("ExecSync", request, ctr=ctr)
        if resp is not None and resp.exit_code != code and not ctr.shim_killed:
            self.ledger.violation(
                f"ExecSync in {ctr.id[:12]} exited {resp.exit_code}, the command exits {code}"
            )

    def stop(self, ctr: ContainerFact) -> None:
        timeout = self.rng.choice([0, 1])
        request = api_pb2.StopContainerRequest(container_id=ctr.id, timeout=timeout)
        ack, _, _ = self.call("StopContainer", request, ctr=ctr)
        ctr.stopped = ack if ack is not Ack.NO else ctr.stopped

    def remove(self, ctr: ContainerFact) -> None:
        request = api_pb2.RemoveContainerRequest(container_id=ctr.id)
        ack, _, _ = self.call("RemoveContainer", request, ctr=ctr)
        ctr.removed = ack if ack is not Ack.NO else ctr.removed

    def stop_pod(self, pod: PodFact) -> None:
        ack, _, _ = self.call(
            "StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id)
        )
        pod.stopped = ack if ack is not Ack.NO else pod.stopped
        if ack is Ack.NO:
            return
        for ctr in self.ledger.live_containers(self.index):
            if ctr.pod is pod and ctr.started is not Ack.NO and ctr.stopped is not Ack.YES:
                ctr.stopped = ack

    def remove_pod(self, pod: PodFact) -> None:
        ack, _, _ = self.call(
            "RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id)
        )
        pod.removed = ack if ack is not Ack.NO else pod.removed
        if ack is Ack.NO:
            return
        for ctr in self.ledger.live_containers(self.index):
            if ctr.pod is pod and ctr.removed is not Ack.YES:
                ctr.removed = ack

    def pull_or_remove_image(self) -> None:
        image = self.churn
        spec = api_pb2.ImageSpec(image=image.ref)
        if image.pulled is Ack.NO or image.removed is Ack.YES:
            ack, _, _ = self.call("PullImage", api_pb2.PullImageRequest(image=spec))
            if ack is not Ack.NO:
                image.pulled, image.removed = ack, Ack.NO
        else:
            ack, _, _ = self.call("RemoveImage", api_pb2.RemoveImageRequest(image=spec))
            if ack is not Ack.NO:
                image.removed = ack
