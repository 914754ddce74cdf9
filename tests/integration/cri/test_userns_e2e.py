"""Pods in their own user namespace (userns_options mode POD), end to end on runc."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import grpc
import pytest

from cri import userns
from cri.api.v1 import api_pb2
from tests.integration.cri.test_pod_e2e import mounts_under, wait_state
from tests.support import oci_builder
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

HOST_ID = 1_000_000  # the pod's root on the host
SIZE = 65536


def userns_options(
    mode: int = api_pb2.POD, mappings: list[api_pb2.IDMapping] | None = None
) -> api_pb2.NamespaceOption:
    maps = (
        mappings
        if mappings is not None
        else [api_pb2.IDMapping(container_id=0, host_id=HOST_ID, length=SIZE)]
    )
    return api_pb2.NamespaceOption(
        pid=api_pb2.CONTAINER,
        userns_options=api_pb2.UserNamespace(mode=mode, uids=maps, gids=maps),
    )


def userns_pod(
    name: str, log_dir: Path, *, pid: int = api_pb2.CONTAINER
) -> api_pb2.PodSandboxConfig:
    config = sandbox_config(name, log_directory=str(log_dir))
    options = userns_options()
    options.pid = pid
    config.linux.security_context.namespace_options.CopyFrom(options)
    return config


@pytest.fixture
def pod_berthd(pod_berthd: Berthd) -> Berthd:
    """berthd, its state directory reachable by a pod's root (pytest's own are mode 0700)."""
    for directory in pod_berthd.state.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
    return pod_berthd


@pytest.fixture
def userns_berthd(pod_berthd: Berthd) -> Berthd:
    """berthd on a node where pods can have user namespaces; the test is skipped elsewhere."""
    why = userns.probe([pod_berthd.root, pod_berthd.state, Path("/dev/shm")])
    if why is not None:
        pytest.skip(f"pods cannot have user namespaces on this node: {why}")
    return pod_berthd


def start(
    daemon: Berthd,
    pod: api_pb2.PodSandboxConfig,
    pod_id: str,
    image: str,
    command: list[str],
    mounts: list[api_pb2.Mount] | None = None,
) -> str:
    """Create and start `command` in the pod, with the pod's namespace options; its id."""
    ctr = container_config("c", image, command, log_path="c.log")
    ctr.linux.security_context.namespace_options.CopyFrom(
        pod.linux.security_context.namespace_options
    )
    ctr.mounts.extend(mounts or [])
    rt = daemon.client.runtime
    cid = rt.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=ctr, sandbox_config=pod)
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    return str(cid)


def run(
    daemon: Berthd,
    pod: api_pb2.PodSandboxConfig,
    pod_id: str,
    image: str,
    script: str,
    mounts: list[api_pb2.Mount] | None = None,
) -> api_pb2.ContainerStatus:
    """Run `sh -c script` to its end in the pod; its status."""
    cid = start(daemon, pod, pod_id, image, ["sh", "-c", script], mounts)
    return wait_state(daemon, cid, api_pb2.CONTAINER_EXITED, timeout=30)


def remove_and_check_nothing_left(berthd: Berthd, pod_id: str) -> None:
    """Remove the pod: no idmapped clone or pod mount may stay (the netns directory's own
    bind mount is berthd's, for every pod)."""
    berthd.client.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert mounts_under(berthd.root, berthd.state) == [str(berthd.state / "netns")]


def output(status: api_pb2.ContainerStatus) -> list[str]:
    return [line.split(" ", 3)[3] for line in Path(status.log_path).read_text().splitlines()]


def test_runtime_handler_reports_user_namespaces(userns_berthd: Berthd) -> None:
    status = userns_berthd.client.runtime.Status(api_pb2.StatusRequest())
    assert all(h.features.user_namespaces for h in status.runtime_handlers)


def test_a_user_namespaced_pod_sees_its_mapping_and_owns_its_files(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "from-host").write_text("hello\n")  # owned by host root: the pod's root sees 0
    pod = userns_pod("userns", tmp_path / "logs")
    rt = userns_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    script = (
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c '%u:%g' /bin/busybox; "
        "echo written > /root-file && stat -c '%u:%g' /root-file; "
        "stat -c '%u:%g' /vol/from-host; echo back > /vol/from-pod; "
        "cat /etc/hostname; stat -c '%u:%g' /etc/hosts /etc/resolv.conf; "
        "echo shm > /dev/shm/x && echo shm-writable"
    )
    mount = api_pb2.Mount(container_path="/vol", host_path=str(volume))
    status = run(userns_berthd, pod, pod_id, registry.ref(), script, [mount])
    assert status.exit_code == 0, output(status)
    lines = [" ".join(line.split()) for line in output(status)]
    assert lines == [
        f"0 {HOST_ID} {SIZE}",  # uid_map
        f"0 {HOST_ID} {SIZE}",  # gid_map
        "0",  # id -u
        "0:0",  # the image's files: root's, through the idmapped layers
        "0:0",  # a file the pod's root wrote into its rootfs
        "0:0",  # the volume's file of host root
        "userns",
        "0:0",  # /etc/hosts
        "0:0",  # /etc/resolv.conf
        "shm-writable",
    ]
    # Through the idmapped volume the pod's root is the volume's root: what it wrote there is
    # host root's on disk, as the volume's own files are.
    assert (volume / "from-pod").stat().st_uid == 0

    # The pod's network namespace is its user namespace's, and it has its IP.
    pins = userns_berthd.state / "netns" / pod_id
    owner = subprocess.run(
        ["nsenter", f"--user={pins / 'user'}", "cat", "/proc/self/uid_map"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert owner == ["0", str(HOST_ID), str(SIZE)]
    net = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert net.network.ip
    assert net.linux.namespaces.options.userns_options.mode == api_pb2.POD

    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    remove_and_check_nothing_left(userns_berthd, pod_id)


def test_a_user_namespaced_pod_sharing_its_pid_namespace(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    pod = userns_pod("userns-pid", tmp_path / "logs", pid=api_pb2.POD)
    rt = userns_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    # The infra process (catatonit) is PID 1 of the pod's PID namespace.
    pod.linux.security_context.namespace_options.pid = api_pb2.POD
    script = "tr '\\0' ' ' </proc/1/cmdline; echo; id -u"
    status = run(userns_berthd, pod, pod_id, registry.ref(), script)
    assert status.exit_code == 0, output(status)
    assert [line.strip() for line in output(status)] == ["/catatonit -P", "0"]
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            userns_options(
                mappings=[
                    api_pb2.IDMapping(container_id=0, host_id=HOST_ID, length=SIZE),
                    api_pb2.IDMapping(container_id=0, host_id=2 * HOST_ID, length=SIZE),
                ]
            ),
            "exactly one uid mapping",
        ),
        (
            userns_options(
                mappings=[api_pb2.IDMapping(container_id=1, host_id=HOST_ID, length=SIZE)]
            ),
            "container id 0",
        ),
        (userns_options(mode=api_pb2.CONTAINER), "mode CONTAINER is not supported"),
        (userns_options(mode=api_pb2.TARGET), "mode TARGET is not supported"),
    ],
)
def test_user_namespace_options_berth_cannot_honour_are_refused(
    pod_berthd: Berthd, tmp_path: Path, options: api_pb2.NamespaceOption, message: str
) -> None:
    config = sandbox_config("bad-userns", log_directory=str(tmp_path))
    config.linux.security_context.namespace_options.CopyFrom(options)
    with pytest.raises(grpc.RpcError) as refused:
        pod_berthd.client.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    assert not pod_berthd.client.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert not list((pod_berthd.state / "netns").glob("*/*"))


def test_host_network_beside_a_user_namespace_is_refused(
    pod_berthd: Berthd, tmp_path: Path
) -> None:
    config = userns_pod("userns-hostnet", tmp_path)
    config.linux.security_context.namespace_options.network = api_pb2.NODE
    with pytest.raises(grpc.RpcError) as refused:
        pod_berthd.client.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "host's network" in (refused.value.details() or "")


def test_nothing_is_left_when_a_container_cannot_get_its_mounts(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    """A volume on a filesystem that cannot be idmapped (procfs): the create is refused and
    no clone, bundle or shim is left."""
    pod = userns_pod("userns-bad-volume", tmp_path / "logs")
    rt = userns_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    mount = api_pb2.Mount(container_path="/p", host_path="/proc/self")
    with pytest.raises(grpc.RpcError) as refused:
        run(userns_berthd, pod, pod_id, registry.ref(), "true", [mount])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "idmapped mount of /proc/self" in (refused.value.details() or "")
    assert not list((userns_berthd.state / "containers").glob("*"))
    assert not [p for p in mounts_under(userns_berthd.state) if "/containers/" in p]
    assert os.listdir(userns_berthd.state / "shims") == []
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_exec_in_a_user_namespaced_container(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    pod = userns_pod("userns-exec", tmp_path / "logs")
    rt = userns_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    cid = start(userns_berthd, pod, pod_id, registry.ref(), ["sleep", "1000"])
    result = rt.ExecSync(
        api_pb2.ExecSyncRequest(
            container_id=cid, cmd=["sh", "-c", "id -u; cat /proc/self/uid_map"], timeout=10
        )
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().split() == ["0", "0", str(HOST_ID), str(SIZE)]
    # The container's processes run as the pod's root on the host.
    verbose = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid, verbose=True))
    pid = json.loads(verbose.info["info"])["pid"]
    assert Path(f"/proc/{pid}").stat().st_uid == HOST_ID
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_a_handler_without_user_namespaces_refuses_such_pods(
    berthd_dir: Path, cni_net: CniNet, tmp_path: Path
) -> None:
    runc = {"path": shutil.which("runc") or "/usr/sbin/runc", "user_namespaces": False}
    daemon = Berthd(
        berthd_dir, {"cni": {"conf_dir": str(cni_net.conf_dir)}, "runtimes": {"runc": runc}}
    )
    daemon.start()
    try:
        handlers = daemon.client.runtime.Status(api_pb2.StatusRequest()).runtime_handlers
        assert not any(h.features.user_namespaces for h in handlers)
        with pytest.raises(grpc.RpcError) as refused:
            daemon.client.runtime.RunPodSandbox(
                api_pb2.RunPodSandboxRequest(config=userns_pod("no-userns", tmp_path))
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "runtimes.runc.user_namespaces is false" in (refused.value.details() or "")
    finally:
        assert daemon.stop() == 0


def test_a_user_namespaced_pod_survives_a_berthd_crash(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    pod = userns_pod("userns-crash", tmp_path / "logs")
    rt = userns_berthd.client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    cid = start(userns_berthd, pod, pod_id, registry.ref(), ["sleep", "1000"])
    userns_berthd.kill()
    userns_berthd.start()
    rt = userns_berthd.client.runtime
    assert wait_state(userns_berthd, cid, api_pb2.CONTAINER_RUNNING).state == (
        api_pb2.CONTAINER_RUNNING
    )
    result = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["id", "-u"], timeout=10))
    assert (result.exit_code, result.stdout) == (0, b"0\n")
    remove_and_check_nothing_left(userns_berthd, pod_id)


def test_image_volumes_of_several_layers_in_a_user_namespaced_pod(
    userns_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    """An image volume whose view is an overlay (two layers) is mounted from idmapped layers."""
    two_layers = oci_builder.make_image(
        [
            oci_builder.busybox_rootfs_layer("gzip"),
            oci_builder.layer([oci_builder.file("extra", b"second layer\n")]),
        ],
        oci_builder.ImageSpec(cmd=["sh"]),
    )
    ref = f"{registry.host}/library/two-layers:latest"
    registry.push("library/two-layers", "latest", two_layers)
    rt = userns_berthd.client.runtime
    userns_berthd.client.images.PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    )
    pod = userns_pod("userns-ivol", tmp_path / "logs")
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    volume = api_pb2.Mount(container_path="/img", readonly=True, image=api_pb2.ImageSpec(image=ref))
    script = "cat /img/extra; stat -c '%u:%g' /img/extra /img/bin/busybox"
    status = run(userns_berthd, pod, pod_id, registry.ref(), script, [volume])
    assert status.exit_code == 0, output(status)
    assert output(status) == ["second layer", "0:0", "0:0"]
    remove_and_check_nothing_left(userns_berthd, pod_id)
