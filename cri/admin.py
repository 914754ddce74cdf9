"""berth's admin service (``berth.admin.v1.Admin``) for berthctl: pull with progress, import.

Served on the CRI socket beside runtime.v1; errors go through the same instrument layer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc

from cri import errors, instrument
from cri.api.admin.v1 import admin_pb2, admin_pb2_grpc
from cri.runtime import Runtime
from snapshotter.puller import Progress

PROGRESS_INTERVAL = 0.2  # seconds between progress messages


async def pull_image(
    rt: Runtime, request: admin_pb2.PullImageRequest
) -> AsyncIterator[admin_pb2.PullImageProgress]:
    if not request.image:
        raise errors.InvalidArgument("PullImage: image reference is empty")
    layers: dict[str, Progress] = {}
    pull = asyncio.create_task(rt.images.pull(request.image, progress=_record(layers)))
    try:
        sent: list[admin_pb2.LayerProgress] = []
        while not pull.done():
            await asyncio.wait({pull}, timeout=PROGRESS_INTERVAL)
            current = _snapshot(layers)
            if current and current != sent:
                sent = current
                yield admin_pb2.PullImageProgress(layers=current)
        image = pull.result()
    finally:
        pull.cancel()
    yield admin_pb2.PullImageProgress(layers=_snapshot(layers), image_id=image.id)


def _record(layers: dict[str, Progress]) -> Callable[[Progress], None]:
    def progress(p: Progress) -> None:
        layers[p.layer] = p

    return progress


def _snapshot(layers: dict[str, Progress]) -> list[admin_pb2.LayerProgress]:
    return [
        admin_pb2.LayerProgress(digest=p.layer, done=p.done, total=p.total) for p in layers.values()
    ]


async def import_image(
    rt: Runtime, request: admin_pb2.ImportImageRequest
) -> admin_pb2.ImportImageResponse:
    path = Path(request.path)
    if not path.is_absolute():
        raise errors.InvalidArgument(f"ImportImage: {request.path!r} is not an absolute path")
    if not await asyncio.to_thread(path.is_file):
        raise errors.NotFound(f"ImportImage: {path} is not a file")
    images = await rt.images.import_archive(path)
    return admin_pb2.ImportImageResponse(
        images=[admin_pb2.ImportedImage(id=i.id, repo_tags=list(i.repo_tags)) for i in images]
    )


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, rt: Runtime) -> None:
        self._pull = instrument.server_stream("Admin.PullImage", functools.partial(pull_image, rt))
        self._import = instrument.unary("Admin.ImportImage", functools.partial(import_image, rt))

    async def PullImage(
        self, request: admin_pb2.PullImageRequest, context: Any
    ) -> AsyncIterator[admin_pb2.PullImageProgress]:
        async for item in self._pull(request, context):
            yield item

    async def ImportImage(
        self, request: admin_pb2.ImportImageRequest, context: Any
    ) -> admin_pb2.ImportImageResponse:
        return await self._import(request, context)


def add_admin_service(server: grpc.aio.Server, rt: Runtime) -> None:
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(rt), server)
