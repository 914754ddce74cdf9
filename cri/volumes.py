"""Image volumes: a CRI mount that names an image gets that image's filesystem, read-only.

For each such mount berthd takes a read-only view snapshot of the image (key
``<container id>-ivol-<n>``), mounts it under ``<state>/containers/<id>/volumes/<n>`` in the
host's mount namespace, and hands that directory (or ``image_sub_path`` below it) to the spec
as the bind source. The mounts outlive a berthd restart like the container does, and are
unmounted with the container.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from cri import errors
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from snapshotter import mount as snapshot_mount
from snapshotter.api import Mount

KEY_INFIX = "-ivol-"


def volumes_dir(rt: Runtime, container_id: str) -> Path:
    return rt.state / "containers" / container_id / "volumes"


def owner_of(key: str) -> str:
    """The container id an image-volume snapshot key belongs to (the key itself otherwise)."""
    return key.split(KEY_INFIX, 1)[0]


def prepare(
    rt: Runtime,
    container_id: str,
    config: api_pb2.ContainerConfig,
    undo: ExitStack,
    *,
    remap: Callable[[Sequence[Mount], str], Sequence[Mount]] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Mount every image volume of ``config``; returns (container path -> host path,
    container path -> image id). Blocking; undone through ``undo`` on failure.

    ``remap(mounts, name)`` rewrites a volume's snapshot mounts first (a user-namespaced pod's
    volumes are mounted from idmapped layers: cri.userns)."""
    sources: dict[str, str] = {}
    image_ids: dict[str, str] = {}
    for n, m in enumerate(config.mounts):
        if not m.image.image:
            continue
        if not m.readonly:
            raise errors.InvalidArgument(f"image volume {m.container_path!r} must be read-only")
        image = rt.images.get(m.image.image)
        key = f"{container_id}{KEY_INFIX}{n}"
        target = volumes_dir(rt, container_id) / str(n)
        target.mkdir(parents=True, exist_ok=True)
        mounts: Sequence[Mount] = rt.images.view_rootfs(key, image.id)
        undo.callback(rt.images.remove_rootfs, key)
        if remap is not None:
            mounts = remap(mounts, f"v{n}")
        snapshot_mount.mount_all(mounts, target)
        undo.callback(snapshot_mount.unmount_all, target)
        sources[m.container_path] = _sub_path(target, m.image_sub_path, m.container_path)
        image_ids[m.container_path] = image.id
    return sources, image_ids


def _sub_path(root: Path, sub_path: str, container_path: str) -> str:
    if not sub_path:
        return str(root)
    candidate = os.path.realpath(root / sub_path.lstrip("/"))
    inside = candidate == str(root) or candidate.startswith(f"{root}/")
    if not inside or not os.path.exists(candidate):
        raise errors.InvalidArgument(
            f"image volume {container_path!r}: sub path {sub_path!r} does not exist in the image"
        )
    return candidate


def release(rt: Runtime, container_id: str) -> None:
    """Unmount and drop the container's image volumes. Blocking, idempotent."""
    directory = volumes_dir(rt, container_id)
    if directory.is_dir():
        for target in directory.iterdir():
            snapshot_mount.unmount_all(target)
    prefix = f"{container_id}{KEY_INFIX}"
    for key in rt.images.rootfs_keys():
        if key.startswith(prefix):
            rt.images.remove_rootfs(key)
