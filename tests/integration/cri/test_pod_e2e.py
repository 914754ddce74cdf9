"""A real pod end to end, as a kubelet drives it: pull, sandbox with a CNI IP, container on
runc, logs, exec, stop, remove — and nothing left behind."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$")


def wait_state(
    daemon: Berthd, cid: str, state: int, timeout: float = 15
) -> api_pb2.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = daemon.client.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid)
        ).status
        if status.state == state or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def mounts_under(*dirs: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    points = [line.split()[4] for line in lines]
    return [p for p in points if any(p.startswith(str(d)) for d in dirs)]


def run_pod(daemon: Berthd, name: str, log_dir: Path) -> str:
    resp = daemon.client.runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=sandbox_config(name, log_directory=str(log_dir)))
    )
    return str(resp.pod_sandbox_id)


def create_start(
    daemon: Berthd,
    pod_id: str,
    name: str,
    image: str,
    command: list[str],
    log_dir: Path,
    mounts: Sequence[api_pb2.Mount] = (),
) -> str:
    pod = daemon.client.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
    ).status
    config = sandbox_config(pod.metadata.name, log_directory=str(log_dir))
    config.metadata.CopyFrom(pod.metadata)
    ctr = container_config(name, image, command, log_path=f"{name}/0.log")
    ctr.mounts.extend(mounts)
    cid = daemon.client.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=ctr, sandbox_config=config)
    ).container_id
    daemon.client.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    return str(cid)


def test_pod_runs_end_to_end(
    pod_berthd: Berthd, registry: LocalRegistry, cni_net: CniNet, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    log_dir = tmp_path / "logs"
    pod_id = run_pod(pod_berthd, "web", log_dir)
    pod = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert pod.state == api_pb2.SANDBOX_READY
    assert pod.network.ip.startswith(cni_net.subnet.rsplit(".", 1)[0])
    assert pod.annotations["test/annotation"] == "web"
    ping = subprocess.run(["ping", "-c1", "-W2", pod.network.ip], capture_output=True)
    assert ping.returncode == 0, ping.stdout

    cid = create_start(
        pod_berthd,
        pod_id,
        "app",
        registry.ref(),
        ["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"],
        log_dir,
    )
    status = wait_state(pod_berthd, cid, api_pb2.CONTAINER_RUNNING)
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert status.log_path == str(log_dir / "app" / "0.log")
    assert status.image_ref and status.image_id.startswith("sha256:")

    result = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10))
    assert (result.exit_code, result.stdout) == (0, b"web\n")
    failing = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "exit 7"]))
    assert failing.exit_code == 7
    ip = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["ip", "-4", "addr"]))
    assert pod.network.ip in ip.stdout.decode()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(status.log_path).read_text().count("\n") < 2:
        time.sleep(0.05)
    records = [LOG_LINE.match(line) for line in Path(status.log_path).read_text().splitlines()]
    assert all(records)
    assert {(m.group(2), m.group(3), m.group(4)) for m in records if m} == {
        ("stdout", "F", "hello"),
        ("stderr", "F", "oops"),
    }

    listed = rt.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod_id))
    ).containers
    assert [c.id for c in listed] == [cid]

    rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=2))
    stopped = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED)
    assert stopped.state == api_pb2.CONTAINER_EXITED
    # sleep is PID 1 of its namespace: SIGTERM has no handler, so the timeout ends in SIGKILL.
    assert stopped.exit_code == 137 and stopped.reason == "Error"
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid))
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))  # idempotent
    assert not rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    # Only the private mount above the namespace pins stays while berthd runs.
    assert mounts_under(pod_berthd.root, pod_berthd.state) == [str(pod_berthd.state / "netns")]
    assert not list((pod_berthd.state / "netns").iterdir())
    assert pod_berthd.stop() == 0
    assert mounts_under(pod_berthd.root, pod_berthd.state) == []


@pytest.mark.parametrize(("code", "reason"), [(0, "Completed"), (3, "Error")])
def test_exit_code_and_reason(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path, code: int, reason: str
) -> None:
    rt = pod_berthd.client.runtime
    pod_id = run_pod(pod_berthd, f"exit{code}", tmp_path)
    cid = create_start(
        pod_berthd, pod_id, "c", registry.ref(), ["sh", "-c", f"exit {code}"], tmp_path
    )
    status = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED)
    assert (status.state, status.exit_code, status.reason) == (
        api_pb2.CONTAINER_EXITED,
        code,
        reason,
    )
    assert status.finished_at >= status.started_at > 0
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    with pytest.raises(grpc.RpcError) as info:
        rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_duplicate_container_name_is_already_exists(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    pod_id = run_pod(pod_berthd, "dup", tmp_path)
    create_start(pod_berthd, pod_id, "same", registry.ref(), ["sleep", "100"], tmp_path)
    with pytest.raises(grpc.RpcError) as info:
        create_start(pod_berthd, pod_id, "same", registry.ref(), ["sleep", "100"], tmp_path)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_unknown_ids_stop_and_remove_ok(pod_berthd: Berthd) -> None:
    rt = pod_berthd.client.runtime
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id="nope"))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id="nope"))
    rt.StopContainer(api_pb2.StopContainerRequest(container_id="nope"))
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id="nope"))
    with pytest.raises(grpc.RpcError) as info:
        rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_pod_shared_pid_namespace(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    config = sandbox_config("sharedpid", log_directory=str(tmp_path))
    config.linux.security_context.namespace_options.pid = api_pb2.POD
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    ids = []
    for name, cmd in (("a", ["sleep", "1001"]), ("b", ["sleep", "1002"])):
        container = container_config(name, registry.ref(), cmd, log_path=f"{name}.log")
        container.linux.security_context.namespace_options.pid = api_pb2.POD
        cid = rt.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=container, sandbox_config=config
            )
        ).container_id
        rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
        ids.append(cid)
    ps = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=ids[0], cmd=["ps", "-o", "args"]))
    out = ps.stdout.decode()
    assert "sleep 1001" in out and "sleep 1002" in out and "catatonit" in out
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert list((pod_berthd.state / "shims").iterdir()) == []
