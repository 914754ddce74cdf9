"""berthctl demo: a first pod, offline — import a busybox image, run a pod with a container,
show its IP, log and an exec, then remove it (unless --keep)."""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from cri.api.admin.v1 import admin_pb2, admin_pb2_grpc
from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from cri.ctl.imagebuild import write_docker_archive

IMAGE = "localhost/berth/busybox:latest"
SCRIPT = "echo hello from a berth container; exec sleep 3600"


def cmd_demo(client: CriClient, args: argparse.Namespace) -> int:
    _ensure_image(client)
    uid = str(uuid.uuid4())
    meta = api_pb2.PodSandboxMetadata(name="berth-demo", namespace="default", uid=uid)
    log_dir = f"{args.log_root}/default_berth-demo_{uid}"
    pod = api_pb2.PodSandboxConfig(metadata=meta, hostname="berth-demo", log_directory=log_dir)
    rt = client.runtime
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod), timeout=240).pod_sandbox_id
    status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    print(
        f"pod {pod_id[:13]} is {api_pb2.PodSandboxState.Name(status.state)}, "
        f"IP {status.network.ip or '(host network)'}"
    )
    container = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="hello"),
        image=api_pb2.ImageSpec(image=IMAGE),
        command=["sh", "-c", SCRIPT],
        log_path="hello/0.log",
    )
    cid = rt.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=container, sandbox_config=pod)
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    print(f"container {cid[:13]} started")
    log = Path(log_dir) / "hello" / "0.log"
    for _ in range(50):
        if log.exists() and log.stat().st_size:
            break
        time.sleep(0.1)
    print(f"log ({log}):\n  " + log.read_text().strip().replace("\n", "\n  "))
    result = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10))
    print(f"exec hostname -> {result.stdout.decode().strip()} (exit {result.exit_code})")
    if args.keep:
        print(f"kept: crictl rmp -f {pod_id[:13]} removes it")
        return 0
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    print("pod removed")
    return 0


def _ensure_image(client: CriClient) -> None:
    spec = api_pb2.ImageSpec(image=IMAGE)
    if client.images.ImageStatus(api_pb2.ImageStatusRequest(image=spec)).HasField("image"):
        return
    admin = admin_pb2_grpc.AdminStub(client.channel)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "busybox.tar"
        write_docker_archive(archive, IMAGE)
        admin.ImportImage(admin_pb2.ImportImageRequest(path=str(archive)), timeout=600)
    print(f"imported {IMAGE} (built from the host's busybox-static)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run a first pod offline and remove it again")
    demo.add_argument("--keep", action="store_true", help="leave the pod running")
    demo.add_argument("--log-root", default="/var/log/pods", help="where pod logs go")
    demo.set_defaults(func=cmd_demo)
