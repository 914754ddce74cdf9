"""A shim that stops answering (SIGSTOP): calls on its container come back with a clear error
in bounded time, and every other container and pod is served meanwhile."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.harness import FaultHarness, none

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

# berthd must give up on a silent shim well before a kubelet's own 2-minute deadline; the
# client waits longer than that, so an answer in time is berthd's, not the client's.
ANSWER_WITHIN = 12.0
CLIENT_DEADLINE = 20.0


@dataclass(slots=True)
class Outcome:
    name: str
    elapsed: float = 0.0
    code: grpc.StatusCode | None = None
    details: str = ""

    def describe(self) -> str:
        code = self.code.name if self.code else "OK"
        return f"{self.name}: {code} after {self.elapsed:.1f}s ({self.details[:120]})"


def timed(name: str, call: Callable[[], Any]) -> Outcome:
    outcome = Outcome(name)
    started = time.monotonic()
    try:
        call()
    except grpc.RpcError as exc:
        outcome.code, outcome.details = exc.code(), exc.details() or ""
    outcome.elapsed = time.monotonic() - started
    return outcome


def shim_pid(harness: FaultHarness, cid: str) -> int:
    return int((harness.daemon.state / "shims" / cid / "shim.pid").read_text().split()[0])


@pytest.fixture
def frozen(harness: FaultHarness) -> Iterator[tuple[str, str, int]]:
    """A running container whose shim is stopped (SIGSTOP); continued at the end."""
    pod_id = harness.run_pod(harness.fresh_name("frozen"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    pid = shim_pid(harness, cid)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pod_id, cid, pid
    finally:
        os.kill(pid, signal.SIGCONT)


def test_calls_to_a_stopped_shim_fail_in_time_and_nothing_else_waits(
    harness: FaultHarness, frozen: tuple[str, str, int]
) -> None:
    _, cid, _ = frozen
    other_pod = harness.run_pod(harness.fresh_name("other"))
    other = harness.create(other_pod, "app", ["sleep", "1000"])
    harness.start(other)

    calls: dict[str, Callable[[], Any]] = {
        "ExecSync": lambda: harness.call(
            "ExecSync",
            api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=2),
            CLIENT_DEADLINE,
        ),
        "StopContainer": lambda: harness.call(
            "StopContainer",
            api_pb2.StopContainerRequest(container_id=cid, timeout=1),
            CLIENT_DEADLINE,
        ),
    }
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=lambda n=n, c=c: outcomes.append(timed(n, c)))
        for n, c in calls.items()
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # both calls are now waiting on the stopped shim

    # Meanwhile: the frozen container's status, the other container, a new pod.
    started = time.monotonic()
    assert harness.status(cid).state == api_pb2.CONTAINER_RUNNING
    result = harness.call("ExecSync", api_pb2.ExecSyncRequest(container_id=other, cmd=["true"]))
    assert result.exit_code == 0
    harness.probe()
    assert time.monotonic() - started < ANSWER_WITHIN

    for thread in threads:
        thread.join(CLIENT_DEADLINE + 5)
    wrong = []
    for outcome in outcomes:
        answered = outcome.code is not None and outcome.elapsed < ANSWER_WITHIN
        clear = cid in outcome.details or "shim" in outcome.details
        if not (answered and clear):
            wrong.append(f"no clear error in time from berthd: {outcome.describe()}")
    none(wrong)
