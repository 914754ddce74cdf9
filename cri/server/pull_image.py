"""PullImage: fetch an image from its registry (or a mirror) and unpack it."""

from __future__ import annotations

from cri import errors, metrics_collector
from cri.api.v1 import api_pb2
from cri.runtime import Runtime
from snapshotter.registry.auth import Credentials


async def handle(rt: Runtime, request: api_pb2.PullImageRequest) -> api_pb2.PullImageResponse:
    ref = request.image.image
    if not ref:
        raise errors.InvalidArgument("PullImage: image reference is empty")
    meter = metrics_collector.PullMeter()
    with meter.timed():
        image = await rt.images.pull(ref, auth=_credentials(request.auth), progress=meter.progress)
    return api_pb2.PullImageResponse(image_ref=image.id)


def _credentials(auth: api_pb2.AuthConfig) -> Credentials | None:
    if not (
        auth.username or auth.password or auth.auth or auth.identity_token or auth.registry_token
    ):
        return None
    return Credentials(
        username=auth.username,
        password=auth.password,
        auth=auth.auth,
        identity_token=auth.identity_token,
        registry_token=auth.registry_token,
        server_address=auth.server_address,
    )
