"""ImageFsInfo: bytes and inodes used by the snapshot filesystem (the kubelet reads [0])."""

from __future__ import annotations

import time

from cri.api.v1 import api_pb2
from cri.runtime import Runtime


async def handle(rt: Runtime, request: api_pb2.ImageFsInfoRequest) -> api_pb2.ImageFsInfoResponse:
    usage = rt.images.fs_usage()
    fs = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=usage.mountpoint),
    )
    fs.used_bytes.value = usage.used_bytes
    fs.inodes_used.value = usage.inodes_used
    return api_pb2.ImageFsInfoResponse(image_filesystems=[fs], container_filesystems=[fs])
