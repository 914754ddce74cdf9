"""How berth's images look through the CRI: the snapshotter's Image record -> api_pb2.Image."""

from __future__ import annotations

from typing import Any

from cri.api.v1 import api_pb2
from snapshotter.images import Image


def image_user(config: dict[str, Any]) -> tuple[int | None, str]:
    """(uid, username) from the image config's ``User``: a numeric user gives the uid, a name
    gives the username; the group part is ignored, as the kubelet expects."""
    user = str(config.get("config", {}).get("User", "") or "")
    name = user.split(":", 1)[0]
    if not name:
        return 0, ""  # no USER: root, which the kubelet reads as uid 0
    if name.isdigit():
        return int(name), ""
    return None, name


def to_cri(image: Image) -> api_pb2.Image:
    uid, username = image_user(image.config)
    out = api_pb2.Image(
        id=image.id,
        repo_tags=list(image.repo_tags),
        repo_digests=list(image.repo_digests),
        size=image.size,
        username=username,
        pinned=image.pinned,
        spec=api_pb2.ImageSpec(image=image.id),
    )
    if uid is not None:
        out.uid.value = uid
    return out
