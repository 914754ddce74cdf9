"""CNI plugins fail, crash or hang at ADD and DEL: the pod call gets a clear error, no veth,
lease, pin or cache entry is left, a retry works, and other pods keep being served."""

from __future__ import annotations

import time

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.conftest import CNI_TIMEOUT
from tests.integration.faults.harness import FaultHarness, error_of, none
from tests.support.failpoint_node import pid_alive
from tests.support.failpoints import Action, Fault

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


def pod_names(harness: FaultHarness) -> set[str]:
    items = harness.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items
    return {p.metadata.name for p in items}


@pytest.mark.parametrize(
    ("plugin", "action"),
    [
        ("bridge", "fail"),
        ("bridge", "crash_after"),  # veth and lease made, then the plugin dies
        ("host-local", "fail"),  # IPAM, called by bridge
        ("portmap", "fail"),  # after bridge attached the pod
        ("portmap", "crash"),
    ],
)
def test_failed_add_fails_run_pod_and_leaves_no_network(
    harness: FaultHarness, plugin: str, action: Action
) -> None:
    name = harness.fresh_name("add")
    harness.points.arm(
        Fault(command="ADD", plugin=plugin, action=action, message="failpoint: no address")
    )
    err = error_of(lambda: harness.run_pod(name))
    assert [c.plugin for c in harness.points.fired("ADD")] == [plugin]
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert "cni plugin" in (err.details() or "")
    if action == "fail":
        assert "failpoint: no address" in (err.details() or "")
    assert name not in pod_names(harness)
    none(harness.leaks())
    harness.points.disarm()
    pod_id = harness.run_pod(name)  # the name was not kept reserved
    harness.remove_pod(pod_id)
    none(harness.leaks())


def test_add_hanging_past_the_timeout_is_killed_and_undone(harness: FaultHarness) -> None:
    name = harness.fresh_name("hang")
    harness.points.arm(Fault(command="ADD", plugin="portmap", action="hang", seconds=120))
    started = time.monotonic()
    err = error_of(lambda: harness.run_pod(name))
    elapsed = time.monotonic() - started
    (hung,) = harness.points.fired("ADD")
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.details()
    assert "portmap" in (err.details() or "")
    assert elapsed < CNI_TIMEOUT + 5, elapsed
    assert not pid_alive(hung.pid), "the hung plugin was not killed"
    assert name not in pod_names(harness)
    none(harness.leaks())
    harness.probe()
    none(harness.leaks())


@pytest.mark.parametrize("action", ["fail", "hang"])
@pytest.mark.parametrize("call", ["StopPodSandbox", "RemovePodSandbox"])
def test_failed_del_fails_the_call_and_a_retry_cleans_up(
    harness: FaultHarness, call: str, action: Action
) -> None:
    pod_id = harness.run_pod(harness.fresh_name("del"))
    cid = harness.create(pod_id, "app", ["sleep", "1000"])
    harness.start(cid)
    harness.points.arm(
        Fault(command="DEL", plugin="bridge", action=action, seconds=120, message="failpoint: busy")
    )
    request = (
        api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
        if call == "StopPodSandbox"
        else api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    )
    err = error_of(lambda: harness.call(call, request))
    assert harness.points.fired("DEL")
    expected = (
        grpc.StatusCode.UNAVAILABLE if action == "fail" else grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert err.code() == expected, err.details()
    assert "bridge" in (err.details() or "") and pod_id in (err.details() or "")
    # The pod is still listed (so the kubelet retries) and its network still undoable.
    assert pod_id in {
        p.id for p in harness.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items
    }
    none(harness.leaks())
    harness.points.disarm()
    harness.call(call, request)
    harness.remove_pod(pod_id)
    none(harness.leaks())


def test_other_pods_are_served_while_a_plugin_hangs(harness: FaultHarness) -> None:
    """One pod's hanging ADD must not hold up another pod's ADD or any other call."""
    import threading

    harness.points.arm(Fault(command="ADD", plugin="portmap", action="hang", seconds=120))
    errors: list[grpc.RpcError] = []

    def stuck() -> None:
        try:
            harness.run_pod(harness.fresh_name("stuck"))
        except grpc.RpcError as exc:
            errors.append(exc)

    thread = threading.Thread(target=stuck)
    thread.start()
    deadline = time.monotonic() + 5
    while not harness.points.fired("ADD") and time.monotonic() < deadline:
        time.sleep(0.02)
    (hung,) = harness.points.fired("ADD")
    harness.points.disarm()  # only the call already hanging stays stuck
    # Served while the plugin still hangs: ordering, not a time budget, so a slow (emulated)
    # machine cannot fail it by being slow, nor pass it when the calls were serialized.
    other = harness.run_pod(harness.fresh_name("other"))
    harness.call("ListPodSandbox", api_pb2.ListPodSandboxRequest())
    assert pid_alive(hung.pid), "another pod's RunPodSandbox waited for the hung plugin"
    thread.join(CNI_TIMEOUT + 10)
    assert [e.code() for e in errors] == [grpc.StatusCode.DEADLINE_EXCEEDED]
    harness.remove_pod(other)
    harness.probe()
    none(harness.leaks())
