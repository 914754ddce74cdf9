"""The table of implemented RPCs: CRI method name -> ``async def handle(rt, request)``.

One module per RPC lives beside this file; add it here when it lands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cri.server import (
    attach,
    container_status,
    create_container,
    exec,
    exec_sync,
    image_fs_info,
    image_status,
    list_containers,
    list_images,
    list_pod_sandbox,
    pod_sandbox_status,
    port_forward,
    pull_image,
    remove_container,
    remove_image,
    remove_pod_sandbox,
    reopen_container_log,
    run_pod_sandbox,
    runtime_config,
    start_container,
    status,
    stop_container,
    stop_pod_sandbox,
    version,
)

HANDLERS: dict[str, Callable[..., Any]] = {
    # RuntimeService
    "Version": version.handle,
    "Status": status.handle,
    "RuntimeConfig": runtime_config.handle,
    "RunPodSandbox": run_pod_sandbox.handle,
    "StopPodSandbox": stop_pod_sandbox.handle,
    "RemovePodSandbox": remove_pod_sandbox.handle,
    "PodSandboxStatus": pod_sandbox_status.handle,
    "ListPodSandbox": list_pod_sandbox.handle,
    "CreateContainer": create_container.handle,
    "StartContainer": start_container.handle,
    "StopContainer": stop_container.handle,
    "RemoveContainer": remove_container.handle,
    "ContainerStatus": container_status.handle,
    "ListContainers": list_containers.handle,
    "ExecSync": exec_sync.handle,
    "ReopenContainerLog": reopen_container_log.handle,
    "Exec": exec.handle,
    "Attach": attach.handle,
    "PortForward": port_forward.handle,
    # ImageService
    "PullImage": pull_image.handle,
    "ListImages": list_images.handle,
    "ImageStatus": image_status.handle,
    "RemoveImage": remove_image.handle,
    "ImageFsInfo": image_fs_info.handle,
}
