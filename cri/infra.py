"""The pod's infra process: only for pods that share one PID namespace among their containers.

A PID namespace dies with its init, and cannot be pinned by a bind mount the way the network,
IPC and UTS namespaces are, so a pod with ``namespace_options.pid = POD`` gets one process:
``catatonit -P`` (a static binary from Debian) as PID 1 of a new PID namespace, run by runc
through a shim like any container, inside the pod's other namespaces and cgroup. Its root
filesystem is a read-only bind of a directory holding only catatonit; no image is pulled.
Containers of the pod join ``/proc/<infra pid>/ns/pid``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from cri import cgroups, errors, netns, userns
from cri.runtime import Runtime
from cri.store import SandboxRecord
from shim import api as shim_api

CATATONIT = Path("/usr/bin/catatonit")


def bundle_dir(rt: Runtime, sandbox_id: str) -> Path:
    return rt.state / "pods" / sandbox_id / "infra"


def _rootfs_source(rt: Runtime) -> Path:
    """A directory with only catatonit in it, shared by every pod's infra (read-only)."""
    root = rt.state / "infra-rootfs"
    if not (root / "catatonit").exists():
        if not CATATONIT.exists():
            raise errors.FailedPrecondition(
                f"a pod sharing its PID namespace needs {CATATONIT} (Debian package catatonit)"
            )
        for sub in ("proc", "dev"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(CATATONIT, root / ".catatonit.tmp")
        (root / ".catatonit.tmp").rename(root / "catatonit")
    return root


def spec(rt: Runtime, sandbox: SandboxRecord) -> dict[str, Any]:
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "mount"}]
    namespaces += [{"type": netns.PIN_KINDS[k], "path": p} for k, p in sandbox.namespaces.items()]
    idmap = userns.pod_idmap(sandbox.config)  # the pid namespace is then the pod's user's
    return {
        "ociVersion": "1.0.2",
        "process": {
            "args": ["/catatonit", "-P"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/"],
            "noNewPrivileges": True,
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
        },
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            # runc creates its default device nodes here; the rootfs itself is read-only.
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "noexec", "mode=755", "size=64k"],
            },
        ],
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups.container_cgroups_path(
                driver=rt.config.cgroup_driver,
                cgroup_root=rt.config.cgroup_root,
                parent=sandbox.cgroup_parent,
                container_id=sandbox.id,
            ),
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            **(idmap.oci() if idmap is not None else {}),
        },
    }


def _write_bundle(rt: Runtime, sandbox: SandboxRecord) -> Path:
    bundle = bundle_dir(rt, sandbox.id)
    (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec(rt, sandbox)))
    return bundle


async def start(rt: Runtime, sandbox: SandboxRecord) -> int:
    """Start the infra process; returns its host PID. Undo with :func:`remove`."""
    source = await asyncio.to_thread(_rootfs_source, rt)
    bundle = await asyncio.to_thread(_write_bundle, rt, sandbox)
    handler = rt.config.runtimes[sandbox.runtime_handler]
    task = await rt.shims.spawn(sandbox.id)
    await task.create(
        shim_api.CreateParams(
            bundle=str(bundle),
            runtime=handler.path,
            runtime_root=str(rt.config.runtime_root(sandbox.runtime_handler)),
            runtime_options=rt.config.runtime_options(sandbox.runtime_handler),
            rootfs_mounts=(
                shim_api.Mount(type="bind", source=str(source), options=("rbind", "ro")),
            ),
        )
    )
    state = await task.start()
    return state.pid


async def remove(rt: Runtime, sandbox_id: str) -> None:
    """Kill the infra process and forget its shim. Idempotent."""
    await rt.shims.destroy(sandbox_id)
