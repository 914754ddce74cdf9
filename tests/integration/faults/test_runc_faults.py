"""The OCI runtime fails, crashes or is refused at create, start, kill, delete and exec: the call
that needed it gets a clear error, nothing is left behind, other pods are not affected."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.harness import FaultHarness, error_of, none
from tests.support import cgroup_view as cg
from tests.support.failpoint_node import cgroup_bases
from tests.support.failpoints import Action, Fault

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

CLEAR_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)


def assert_clear(err: grpc.RpcError, *words: str) -> None:
    assert err.code() in CLEAR_CODES, (err.code(), err.details())
    for word in words:
        assert word in (err.details() or ""), err.details()


def container_ids(harness: FaultHarness, pod_id: str) -> list[str]:
    request = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod_id))
    return [c.id for c in harness.call("ListContainers", request).containers]


def cgroup_processes(harness: FaultHarness, cid: str) -> list[str]:
    """Processes still in the container's cgroup (any hierarchy)."""
    procs: list[str] = []
    for top in cg.parent_dirs(harness.cgroup_parent, cgroup_bases()):
        path = top / cg.container_leaf(cid) / "cgroup.procs"
        if path.exists():
            procs += path.read_text().split()
    return procs


@pytest.mark.parametrize("action", ["fail", "crash", "crash_after"])
def test_runc_create_fault_fails_create_only_and_leaks_nothing(
    harness: FaultHarness, action: Action
) -> None:
    pod_id = harness.run_pod(harness.fresh_name("create"))
    harness.points.arm(Fault(command="create", action=action, message="failpoint: no create"))
    err = error_of(lambda: harness.create(pod_id, "app", ["sleep", "1000"]))
    assert harness.points.fired("create")
    assert_clear(err, "create")
    if action == "fail":
        assert "failpoint: no create" in (err.details() or "")
    assert container_ids(harness, pod_id) == []
    none(harness.leaks())
    harness.points.disarm()
    cid = harness.create(pod_id, "app", ["sleep", "1000"])  # the same name is free again
    harness.start(cid)
    assert harness.status(cid).state == api_pb2.CONTAINER_RUNNING
    harness.remove_pod(pod_id)
    none(harness.leaks())
    harness.probe()


@pytest.mark.parametrize("action", ["fail", "crash_after"])
def test_runc_start_fault_reports_start_error_and_leaves_no_process(
    harness: FaultHarness, action: Action
) -> None:
    pod_id = harness.run_pod(harness.fresh_name("start"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.points.arm(Fault(command="start", action=action, message="failpoint: no start"))
    err = error_of(lambda: harness.start(cid))
    assert harness.points.fired("start")
    assert_clear(err, "start", cid)
    status = harness.status(cid)
    assert (status.state, status.reason) == (api_pb2.CONTAINER_EXITED, "StartError")
    assert status.message
    # Reported as exited: then nothing of it may still run (crash_after: runc did start it).
    deadline = time.monotonic() + 5
    while cgroup_processes(harness, cid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cgroup_processes(harness, cid) == [], "a container reported EXITED still runs"
    none(harness.leaks())
    harness.remove_pod(pod_id)
    none(harness.leaks())
    harness.probe()


def test_a_failing_runc_kill_does_not_stop_stop(harness: FaultHarness) -> None:
    """Stop signals the init itself (the shim reaps it), so `runc kill` failing must not
    matter; the next test reaches `runc kill` where berth does use it."""
    pod_id = harness.run_pod(harness.fresh_name("kill"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    harness.points.arm(Fault(command="kill", action="fail", times=0))
    harness.call("StopContainer", api_pb2.StopContainerRequest(container_id=cid, timeout=1))
    status = harness.wait_state(cid, api_pb2.CONTAINER_EXITED)
    assert (status.state, status.exit_code) == (api_pb2.CONTAINER_EXITED, 137)
    harness.remove_pod(pod_id)
    none(harness.leaks())


def test_runc_kill_failing_while_cleaning_up_after_a_dead_shim(harness: FaultHarness) -> None:
    """berthd cleans up after a container whose shim died (`berth-shim delete`, which runs
    `runc kill`): if that kill fails, the container must still be gone by the time it is
    reported exited, and RemoveContainer must succeed."""
    pod_id = harness.run_pod(harness.fresh_name("deadshim"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    harness.points.arm(Fault(command="kill", action="fail", times=0))
    shim = int((harness.daemon.state / "shims" / cid / "shim.pid").read_text().split()[0])
    os.kill(shim, signal.SIGKILL)
    assert harness.wait_state(cid, api_pb2.CONTAINER_EXITED).state == api_pb2.CONTAINER_EXITED
    assert harness.points.fired("kill")
    assert cgroup_processes(harness, cid) == [], "reported exited while it still runs"
    harness.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=cid))
    assert container_ids(harness, pod_id) == []
    assert cgroup_processes(harness, cid) == [], "the container outlived its removal"
    harness.remove_pod(pod_id)
    none(harness.leaks())


def test_runc_delete_fault_fails_remove_which_succeeds_when_retried(
    harness: FaultHarness,
) -> None:
    pod_id = harness.run_pod(harness.fresh_name("delete"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    # Both `delete` and the `delete --force` that follows it fail.
    harness.points.arm(Fault(command="delete", action="fail", times=2, message="failpoint: busy"))
    err = error_of(
        lambda: harness.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=cid))
    )
    assert harness.points.fired("delete")
    assert_clear(err, "failpoint: busy")
    assert container_ids(harness, pod_id) == [cid]  # still there: the kubelet will retry
    none(harness.leaks())
    harness.points.disarm()
    harness.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=cid))
    assert container_ids(harness, pod_id) == []
    none(harness.leaks())
    harness.remove_pod(pod_id)
    none(harness.leaks())


@pytest.mark.parametrize("action", ["fail", "crash"])
def test_runc_exec_fault_fails_that_exec_only(harness: FaultHarness, action: Action) -> None:
    pod_id = harness.run_pod(harness.fresh_name("exec"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    harness.points.arm(Fault(command="exec", action=action, message="failpoint: no exec"))
    request = api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10)
    err = error_of(lambda: harness.call("ExecSync", request))
    assert harness.points.fired("exec")
    assert_clear(err, "exec")
    assert harness.status(cid).state == api_pb2.CONTAINER_RUNNING
    assert harness.call("ExecSync", request).exit_code == 0  # the next exec works
    harness.remove_pod(pod_id)
    none(harness.leaks())
