"""berthd killed with SIGKILL while pods and containers run: nothing is lost, nothing leaks."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from cri.api.v1 import api_pb2
from tests.integration.cri.test_pod_e2e import create_start, mounts_under, run_pod, wait_state
from tests.support import cgroup_view as cg
from tests.support.berthd import Berthd
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

COUNTER = "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.05; done"
# Waits for the test's signal (a file in a host directory mounted at /go), so that it exits
# while berthd is down however long creating the others took.
EXITER = (
    "while [ ! -e /go/now ]; do sleep 0.1; done; "
    "i=0; while [ $i -lt 10 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
)


def shim_pids(state: Path) -> list[int]:
    pids = []
    for pid_file in (state / "shims").glob("*/shim.pid"):
        pids.append(int(pid_file.read_text().split()[0]))
    return pids


def alive(pid: int) -> bool:
    """Running (an exited process waiting for its reaper, PID 1 here, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sequence_has_no_gap(log: Path) -> bool:
    numbers = [
        int(line.rsplit("line-", 1)[1]) for line in log.read_text().splitlines() if "line-" in line
    ]
    return numbers == list(range(len(numbers))) and len(numbers) > 0


def test_sigkill_with_20_containers_and_5_exits_meanwhile_loses_nothing_and_leaks_nothing(
    pod_berthd: Berthd, registry: LocalRegistry, cni_net: CniNet, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    pods: dict[str, str] = {}
    running: dict[str, str] = {}  # container id -> pod id
    exiting: dict[str, int] = {}  # container id -> the code it exits with while berthd is down
    for n in range(10):
        pod_id = run_pod(pod_berthd, f"p{n}", tmp_path / f"p{n}")
        pods[pod_id] = rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
        ).status.network.ip
        for name in ("counter", "second")[: 2 - n % 2]:
            cid = create_start(
                pod_berthd, pod_id, name, registry.ref(), ["sh", "-c", COUNTER], tmp_path / f"p{n}"
            )
            running[cid] = pod_id
    signal_dir = tmp_path / "go"
    signal_dir.mkdir()
    go = api_pb2.Mount(container_path="/go", host_path=str(signal_dir), readonly=True)
    for n, pod_id in enumerate(pods):
        if n % 2:
            code = 3 + n // 2
            argv = ["sh", "-c", f"{EXITER}; exit {code}"]
            cid = create_start(
                pod_berthd, pod_id, "exits", registry.ref(), argv, tmp_path / f"p{n}", [go]
            )
            exiting[cid] = code
    assert (len(running), len(exiting)) == (15, 5)
    shims_before = shim_pids(pod_berthd.state)
    assert len(shims_before) == 20

    for cid in exiting:
        status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid)).status
        assert status.state == api_pb2.CONTAINER_RUNNING
    pod_berthd.kill()
    (signal_dir / "now").touch()  # the exiters print their lines and exit while berthd is down
    time.sleep(3)
    assert all(alive(pid) for pid in shim_pids(pod_berthd.state))  # containers kept running
    pod_berthd.start()
    rt = pod_berthd.client.runtime

    listed = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert {p.id for p in listed} == set(pods)
    assert all(p.state == api_pb2.SANDBOX_READY for p in listed)
    for pod_id, ip in pods.items():
        status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert status.status.network.ip == ip
    assert len(rt.ListContainers(api_pb2.ListContainersRequest()).containers) == 20
    for cid in running:
        assert wait_state(pod_berthd, cid, api_pb2.CONTAINER_RUNNING).state == (
            api_pb2.CONTAINER_RUNNING
        )
    for cid, code in exiting.items():
        gone = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED)
        assert (gone.state, gone.exit_code, gone.reason) == (
            api_pb2.CONTAINER_EXITED,
            code,
            "Error",
        )
        log = Path(gone.log_path)
        assert sequence_has_no_gap(log) and "line-9" in log.read_text(), log.read_text()[-500:]
    result = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=next(iter(running)), cmd=["true"]))
    assert result.exit_code == 0  # reconnected shims answer

    for cid in running:
        rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0))
        log = Path(
            rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid)).status.log_path
        )
        assert sequence_has_no_gap(log), log.read_text()[-500:]
    for pod_id in pods:
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    assert not [pid for pid in shims_before if alive(pid)]
    assert list((pod_berthd.state / "shims").iterdir()) == []
    assert mounts_under(pod_berthd.root, pod_berthd.state) == [str(pod_berthd.state / "netns")]
    links = subprocess.run(
        ["ip", "-o", "link", "show", "master", cni_net.bridge], capture_output=True, text=True
    ).stdout
    assert links.strip() == ""
    leases = [p.name for p in (cni_net.conf_dir.parent / "ipam").rglob("*") if p.is_file()]
    assert [name for name in leases if name.count(".") == 3] == []
    assert list((pod_berthd.state / "netns").iterdir()) == []
    # Regression: the private mount above the pins, made by the killed berthd, is released
    # by the restarted one when it stops.
    assert pod_berthd.stop() == 0
    assert mounts_under(pod_berthd.root, pod_berthd.state) == []


def test_a_dead_shim_is_reported_and_cleaned_up(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    import signal

    rt = pod_berthd.client.runtime
    pod_id = run_pod(pod_berthd, "shimdies", tmp_path)
    cid = create_start(pod_berthd, pod_id, "c", registry.ref(), ["sleep", "1000"], tmp_path)
    (pid,) = shim_pids(pod_berthd.state)
    os.kill(pid, signal.SIGKILL)
    status = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED)
    assert status.state == api_pb2.CONTAINER_EXITED
    assert status.reason and status.message  # says why, not a silent exit 0
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert list((pod_berthd.state / "shims").iterdir()) == []
    assert mounts_under(pod_berthd.root, pod_berthd.state) == [str(pod_berthd.state / "netns")]
    ps = subprocess.run(["pgrep", "-f", "sleep 1000"], capture_output=True, text=True).stdout
    container_pids = [int(p) for p in ps.split()]
    assert not [p for p in container_pids if alive(p) and _in_state(p, pod_berthd.state)]


def _in_state(pid: int, state: Path) -> bool:
    """Whether a process belongs to this berthd's containers (its cgroup names a container
    of ours) — other tests' processes are never looked at beyond that."""
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        return False
    return cg.in_berth_container(cgroup) and state.exists()
