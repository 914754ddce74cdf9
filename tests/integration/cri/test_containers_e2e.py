"""Container behaviours a kubelet relies on: OOM reporting, exact logs, log reopen."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.cri.test_pod_e2e import run_pod, wait_state
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


def start(daemon: Berthd, pod_id: str, config: api_pb2.ContainerConfig, log_dir: Path) -> str:
    sandbox = sandbox_config("x", log_directory=str(log_dir))
    cid = daemon.client.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox)
    ).container_id
    daemon.client.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    return str(cid)


def read_cri_log(path: Path) -> tuple[list[str], list[str]]:
    """Join P/F records back into lines, per stream, as the kubelet's reader does."""
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    partial: dict[str, str] = {"stdout": "", "stderr": ""}
    with path.open() as f:
        for record in f:
            _, stream, tag, content = record.rstrip("\n").split(" ", 3)
            partial[stream] += content
            if tag.split(":")[0] == "F":
                out[stream].append(partial[stream])
                partial[stream] = ""
    return out["stdout"], out["stderr"]


def test_out_of_memory_is_137_and_oomkilled(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    pod_id = run_pod(pod_berthd, "oom", tmp_path)
    config = container_config(
        "hog", registry.ref(), ["sh", "-c", "x=y; while :; do x=$x$x; done"], log_path="hog.log"
    )
    config.linux.resources.memory_limit_in_bytes = 16 * 1024 * 1024
    cid = start(pod_berthd, pod_id, config, tmp_path)
    status = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED, timeout=60)
    assert (status.state, status.exit_code, status.reason) == (
        api_pb2.CONTAINER_EXITED,
        137,
        "OOMKilled",
    )


def test_100k_lines_with_long_ones_read_back_exactly(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    pod_id = run_pod(pod_berthd, "logs", tmp_path)
    # Every 10,000th line is 40,000 bytes: longer than the 16 KiB split.
    script = (
        "i=0; long=$(head -c 40000 /dev/zero | tr '\\0' x); "
        "while [ $i -lt 100000 ]; do "
        'if [ $((i % 10000)) -eq 0 ]; then echo "$i $long"; else echo "line $i"; fi; '
        "i=$((i+1)); done; echo done >&2"
    )
    cid = start(
        pod_berthd,
        pod_id,
        container_config("talk", registry.ref(), ["sh", "-c", script], log_path="t.log"),
        tmp_path,
    )
    status = wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED, timeout=120)
    assert status.exit_code == 0
    stdout, stderr = read_cri_log(Path(status.log_path))
    long = "x" * 40000
    expected = [f"{i} {long}" if i % 10000 == 0 else f"line {i}" for i in range(100000)]
    assert len(stdout) == len(expected)
    assert stdout == expected
    assert stderr == ["done"]
    records = Path(status.log_path).read_text().splitlines()
    assert max(len(r) for r in records) < 17 * 1024  # long lines were split into P records


def test_reopen_log_after_rotation(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    pod_id = run_pod(pod_berthd, "rotate", tmp_path)
    script = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.05; done"
    cid = start(
        pod_berthd,
        pod_id,
        container_config("r", registry.ref(), ["sh", "-c", script], log_path="r.log"),
        tmp_path,
    )
    log = tmp_path / "r.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size == 0):
        time.sleep(0.05)
    rotated = tmp_path / "r.log.20261128-000000"
    log.rename(rotated)
    rt.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size == 0):
        time.sleep(0.05)
    assert "tick-" in log.read_text()
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0))
    first = [line.rsplit("tick-", 1)[1] for line in rotated.read_text().splitlines()]
    second = [line.rsplit("tick-", 1)[1] for line in log.read_text().splitlines()]
    numbers = [int(n) for n in first + second]
    assert numbers == list(range(len(numbers)))  # nothing lost or repeated across the reopen
    log.unlink()
    with pytest.raises(grpc.RpcError) as info:
        rt.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not log.exists()  # an error creates no file


def test_image_volume_is_mounted_read_only(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    image_id = pod_berthd.client.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=registry.ref()))
    ).image.id
    pod_id = run_pod(pod_berthd, "ivol", tmp_path)
    config = container_config("v", registry.ref(), ["sleep", "100"], log_path="v.log")
    config.mounts.add(
        container_path="/img", readonly=True, image=api_pb2.ImageSpec(image=registry.ref())
    )
    config.mounts.add(
        container_path="/img-etc",
        readonly=True,
        image_sub_path="etc",
        image=api_pb2.ImageSpec(image=registry.ref()),
    )
    cid = start(pod_berthd, pod_id, config, tmp_path)

    def run(*cmd: str) -> api_pb2.ExecSyncResponse:
        return rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=10))

    assert run("/img/bin/ls", "/img/etc/passwd").exit_code == 0  # exec allowed
    assert run("touch", "/img/x").exit_code != 0  # read-only
    assert run("ls", "/img-etc/passwd").exit_code == 0
    status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid)).status
    refs = {m.container_path: m.image.image_ref for m in status.mounts}
    assert refs == {"/img": image_id, "/img-etc": image_id}

    bad = container_config("w", registry.ref(), ["sleep", "100"])
    bad.mounts.add(
        container_path="/img", readonly=False, image=api_pb2.ImageSpec(image=registry.ref())
    )
    missing = container_config("m", registry.ref(), ["sleep", "100"])
    missing.mounts.add(
        container_path="/img",
        readonly=True,
        image_sub_path="nope",
        image=api_pb2.ImageSpec(image=registry.ref()),
    )
    for rejected in (bad, missing):
        with pytest.raises(grpc.RpcError) as info:
            start(pod_berthd, pod_id, rejected, tmp_path)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    lines = Path("/proc/self/mountinfo").read_text()
    assert str(pod_berthd.state / "containers") not in lines


def _alive_with_cmdline(needle: bytes) -> list[int]:
    """Live (not zombie) processes whose command line is exactly `needle` (only looked at)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() != needle:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(entry.name))
    return found


def test_stop_in_a_shared_pid_namespace_ends_what_the_init_left(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    """In a pod sharing one PID namespace, a container's init exiting does not end the
    processes it started (they are not in a namespace of their own): the shim kills them,
    as containerd's does; before, they lived on in the container's cgroup, kept its output
    open, and the exit was only reported when the shim gave up draining it."""
    config = sandbox_config("sharedpid", log_directory=str(tmp_path))
    config.linux.security_context.namespace_options.pid = api_pb2.POD
    rt = pod_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    marker = f"{3000 + time.monotonic_ns() % 997}"
    command = ["sh", "-c", f"trap 'exit 0' TERM; sleep {marker} & wait"]
    ctr = container_config("left", registry.ref(), command, log_path="left.log")
    ctr.linux.security_context.namespace_options.pid = api_pb2.POD
    cid = rt.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=ctr, sandbox_config=config)
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    needle = b"sleep\0" + marker.encode() + b"\0"
    deadline = time.monotonic() + 10
    while not _alive_with_cmdline(needle):
        assert time.monotonic() < deadline, "the background sleep never started"
        time.sleep(0.05)
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=10))
    status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid)).status
    assert (status.state, status.exit_code) == (api_pb2.CONTAINER_EXITED, 0)
    deadline = time.monotonic() + 5  # (being reaped by the pod's init)
    while _alive_with_cmdline(needle) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive_with_cmdline(needle) == [], "the init's background process outlived it"
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
