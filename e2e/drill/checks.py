"""After a crash point, with every worker parked: does berthd still agree with its clients and
with the node?

1. Reconcile: each object whose last request was *maybe* is looked up (by name when its id was
   never learnt) and the ledger adopts what berthd says — either outcome is fine.
2. Acked effects: acked pods, containers and images are there, removed ones are not; pods are
   READY unless stopped; running sleepers still run; an exiter due to have exited has exited
   with its own code; a stopped sleeper exited 137; a container whose shim was killed is
   reported exited.
3. Nothing berthd lists was asked for by nobody; nothing on the node is unaccounted for
   (`tests.support.failpoint_node.problems`: mounts, pins, veths, leases, cgroups, shims,
   runc state, snapshots, blobs).
4. The next operations work: a probe pod runs a container, execs in it, and is removed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from cri.api.v1 import api_pb2
from e2e.drill.ledger import Ack, ContainerFact, ImageFact, Ledger, PodFact
from e2e.drill.workload import CALL_DEADLINE, Link
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.failpoint_node import Node, NodeState, problems, store_view

EXIT_SLACK: Final = 8.0  # seconds an exit may take to be reported after it is due
SIGKILLED: Final = 137
READY, NOTREADY = api_pb2.SANDBOX_READY, api_pb2.SANDBOX_NOTREADY
CREATED, RUNNING, EXITED = (
    api_pb2.CONTAINER_CREATED,
    api_pb2.CONTAINER_RUNNING,
    api_pb2.CONTAINER_EXITED,
)


@dataclass(slots=True)
class Checker:
    link: Link
    node: Node
    ledger: Ledger
    image: str
    log_dir: Path
    cgroup_parent: str
    baseline: NodeState | None = None
    probes: int = 0

    def call(self, op: str, request: Any) -> Any:
        stub = self.link.client.images if op in IMAGE_OPS else self.link.client.runtime
        return getattr(stub, op)(request, timeout=CALL_DEADLINE)

    def verify(self) -> list[str]:
        found: list[str] = []
        pods = {p.id: p for p in self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items}
        found += self.reconcile_pods(pods)
        ctrs = {
            c.id: c for c in self.call("ListContainers", api_pb2.ListContainersRequest()).containers
        }
        found += self.reconcile_containers(ctrs)
        found += self.unknown(pods, ctrs)
        found += self.check_images()
        found += self.check_exits()
        view = store_view(self.link.client)
        found += problems(
            self.node,
            self.node.inspect(),
            view,
            allowed_blobs=self.churn_blobs(),
            baseline=self.baseline,
        )
        found += self.probe()
        self.ledger.prune()
        return found

    # -- pods ----------------------------------------------------------------------------------

    def reconcile_pods(self, listed: dict[str, Any]) -> list[str]:
        by_name = {p.metadata.name: p for p in listed.values()}
        found = []
        for fact in list(self.ledger.live_pods()):
            found += self._pod(fact, listed, by_name)
        return found

    def _pod(self, fact: PodFact, listed: dict[str, Any], by_name: dict[str, Any]) -> list[str]:
        if not fact.id:  # created "maybe": berthd decides
            found = by_name.get(fact.name)
            fact.id, fact.created = (found.id, Ack.YES) if found else ("", Ack.NO)
            return []
        present = fact.id in listed
        if fact.removed is Ack.MAYBE and present:
            fact.stopped = Ack.MAYBE  # half removed: stopped or not
        if fact.removed is Ack.MAYBE:
            fact.removed = Ack.NO if present else Ack.YES
        if fact.created is Ack.MAYBE:
            fact.created = Ack.YES if present else Ack.NO
        if fact.removed is Ack.YES:
            return [f"removed pod {fact.name} {fact.id[:12]} is listed"] if present else []
        if not present:
            fact.removed = Ack.YES
            return [f"acked pod {fact.name} {fact.id[:12]} is gone"]
        state = listed[fact.id].state
        if fact.stopped is Ack.MAYBE:
            fact.stopped = Ack.YES if state == NOTREADY else Ack.NO
        want = NOTREADY if fact.stopped is Ack.YES else READY
        if state != want:
            fact.stopped = Ack.YES if state == NOTREADY else Ack.NO
            what = f"pod {fact.name} {fact.id[:12]}"
            return [f"{what} is {_pod_state(state)}, expected {_pod_state(want)}"]
        return []

    # -- containers ----------------------------------------------------------------------------

    def reconcile_containers(self, listed: dict[str, Any]) -> list[str]:
        by_name = {(c.pod_sandbox_id, c.metadata.name): c for c in listed.values()}
        found = []
        for fact in list(self.ledger.live_containers()):
            found += self._container(fact, listed, by_name)
        return found

    def _container(
        self, fact: ContainerFact, listed: dict[str, Any], by_name: dict[tuple[str, str], Any]
    ) -> list[str]:
        if not fact.id:
            found = by_name.get((fact.pod.id, fact.name))
            fact.id, fact.created = (found.id, Ack.YES) if found else ("", Ack.NO)
            if not found:
                return []
        present = fact.id in listed
        if fact.removed is Ack.MAYBE and present:
            fact.removed = Ack.NO
            self._adopt(fact, listed[fact.id].state)  # half removed: any state will do
        if fact.removed is Ack.MAYBE:
            fact.removed = Ack.YES
        if fact.created is Ack.MAYBE:
            fact.created = Ack.YES if present else Ack.NO
        if fact.removed is Ack.YES:
            return [f"removed container {fact.name} {fact.id[:12]} is listed"] if present else []
        if not present:
            fact.removed = Ack.YES
            return [f"acked container {fact.name} {fact.id[:12]} is gone"]
        return self._container_state(fact, listed[fact.id].state)

    def _adopt(self, fact: ContainerFact, state: int) -> None:
        """Take berthd's word for a container an interrupted request left in any state."""
        fact.started = Ack.NO if state == CREATED else Ack.YES
        fact.stopped = Ack.YES if state == EXITED else Ack.NO
        fact.start_failed = fact.start_failed or state == EXITED
        fact.started_at = fact.started_at or time.monotonic()

    def _container_state(self, fact: ContainerFact, state: int) -> list[str]:
        if fact.started is Ack.MAYBE:
            fact.started = Ack.NO if state == CREATED else Ack.YES
            fact.started_at = time.monotonic()
        if fact.stopped is Ack.MAYBE:
            fact.stopped = Ack.YES if state == EXITED else Ack.NO
        what = f"container {fact.name} {fact.id[:12]}"
        if fact.started is Ack.NO and state == EXITED and self.status(fact).reason == "StartError":
            fact.started = fact.stopped = Ack.YES  # a failed start (reported when it failed)
            fact.start_failed = True
            return []
        if fact.started is Ack.NO:
            return [] if state == CREATED else [f"{what} is {_ctr_state(state)}, never started"]
        if state == CREATED:
            return [f"{what} was started and is CREATED again"]
        if state == RUNNING and fact.exit_code is None and fact.stopped is Ack.YES:
            return [f"{what} was stopped and still runs"]
        if (
            state == EXITED
            and fact.exit_code is None
            and fact.stopped is Ack.NO
            and not fact.shim_killed
        ):
            fact.stopped = Ack.YES
            return [f"{what} was running and is EXITED ({self._exit_text(fact)})"]
        return []

    def check_exits(self) -> list[str]:
        """Exit codes of exited containers; waits for exits that are due (bounded)."""
        found = []
        for fact in list(self.ledger.live_containers()):
            if fact.id and fact.created is Ack.YES and fact.started is Ack.YES:
                found += self._exit(fact)
        return found

    def _exit(self, fact: ContainerFact) -> list[str]:
        due = fact.shim_killed or fact.stopped is Ack.YES or fact.exit_code is not None
        deadline = (
            (fact.started_at + fact.runs_for if fact.exit_code is not None and not fact.shim_killed
             and fact.stopped is not Ack.YES else time.monotonic()) + EXIT_SLACK
        )  # fmt: skip
        status = self.status(fact)
        while due and status.state != EXITED and time.monotonic() < deadline:
            time.sleep(0.1)
            status = self.status(fact)
        what = f"container {fact.name} {fact.id[:12]}"
        if status.state != EXITED:
            return [f"{what} should have exited and is {_ctr_state(status.state)}"] if due else []
        fact.stopped = Ack.YES
        allowed = self._allowed_codes(fact)
        if allowed and status.exit_code not in allowed:
            got = f"{status.exit_code} ({status.reason})"
            return [f"{what} exited {got}, expected one of {sorted(allowed)}"]
        return []

    def _allowed_codes(self, fact: ContainerFact) -> set[int]:
        if fact.shim_killed or fact.start_failed:
            return set()  # whatever the shim left on disk, or "Unknown"
        codes = {SIGKILLED} if fact.stopped is Ack.YES or fact.exit_code is None else set()
        if fact.exit_code is not None:
            codes.add(fact.exit_code)
        return codes

    def status(self, fact: ContainerFact) -> Any:
        request = api_pb2.ContainerStatusRequest(container_id=fact.id)
        return self.call("ContainerStatus", request).status

    def _exit_text(self, fact: ContainerFact) -> str:
        status = self.status(fact)
        return f"exit {status.exit_code}, {status.reason}: {status.message[:80]}"

    # -- the rest ------------------------------------------------------------------------------

    def unknown(self, pods: dict[str, Any], ctrs: dict[str, Any]) -> list[str]:
        known_pods = {p.id for p in self.ledger.live_pods()}
        known_ctrs = {c.id for c in self.ledger.live_containers()}
        found = [f"pod {pid[:12]} ({p.metadata.name}) was never created by anyone"
                 for pid, p in pods.items() if pid not in known_pods]  # fmt: skip
        found += [f"container {cid[:12]} ({c.metadata.name}) was never created by anyone"
                  for cid, c in ctrs.items() if cid not in known_ctrs]  # fmt: skip
        return found

    def check_images(self) -> list[str]:
        found = []
        for image in self.ledger.images:
            found += self._image(image)
        return found

    def _image(self, image: ImageFact) -> list[str]:
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image.ref))
        present = bool(self.call("ImageStatus", request).image.id)
        if image.pulled is Ack.MAYBE:
            image.pulled = Ack.YES if present else Ack.NO
        if image.removed is Ack.MAYBE:
            image.removed = Ack.NO if present else Ack.YES
        expected = image.pulled is Ack.YES and image.removed is not Ack.YES
        if present == expected:
            return []
        image.pulled, image.removed = (Ack.YES, Ack.NO) if present else (Ack.NO, Ack.NO)
        return [f"image {image.ref} is {'there' if present else 'missing'}, expected the opposite"]

    def churn_blobs(self) -> set[str]:
        """Unreferenced churn-image blobs may stay: an interrupted pull keeps them to resume."""
        return {blob for image in self.ledger.images for blob in image.blobs}

    def probe(self) -> list[str]:
        """The next operations work: pod, container, exec, removal."""
        self.probes += 1
        name = f"probe-{self.probes}"
        config = sandbox_config(name, log_directory=str(self.log_dir / name))
        config.linux.cgroup_parent = self.cgroup_parent
        pod_id = ""
        try:
            pod_id = self.call(
                "RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config)
            ).pod_sandbox_id
            ctr = container_config("probe", self.image, ["sleep", "100000"], log_path="probe.log")
            cid = self.call(
                "CreateContainer",
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=pod_id, config=ctr, sandbox_config=config
                ),
            ).container_id
            self.call("StartContainer", api_pb2.StartContainerRequest(container_id=cid))
            result = self.call("ExecSync", api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"]))
            if result.exit_code != 0:
                return [f"probe exec exited {result.exit_code}"]
        except grpc.RpcError as exc:
            return [f"probe failed: {exc.code().name} {exc.details()}"]
        finally:
            if pod_id:
                self.call(
                    "RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
                )
        return []

    def remove_all(self) -> list[str]:
        """Remove every pod and churn image (what the drill made); problems on the way."""
        found: list[str] = []
        for pod in self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items:
            found += self._try(
                "RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id)
            )
        for image in self.ledger.images:
            spec = api_pb2.ImageSpec(image=image.ref)
            found += self._try("RemoveImage", api_pb2.RemoveImageRequest(image=spec))
        return found

    def _try(self, op: str, request: Any) -> list[str]:
        try:
            self.call(op, request)
        except grpc.RpcError as exc:
            return [f"clean-up {op} failed: {exc.code().name} {exc.details()}"]
        return []


IMAGE_OPS: Final = frozenset({"PullImage", "RemoveImage", "ImageStatus", "ListImages"})


def _pod_state(state: int) -> str:
    return str(api_pb2.PodSandboxState.Name(state))  # type: ignore[arg-type]


def _ctr_state(state: int) -> str:
    return str(api_pb2.ContainerState.Name(state))  # type: ignore[arg-type]


def describe(problems_found: Iterable[str]) -> str:
    return "\n".join(f"  - {p}" for p in problems_found)
