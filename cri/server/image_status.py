"""ImageStatus: an image by tag, digest, id or id prefix; an unknown image is not an error."""

from __future__ import annotations

import json

from cri.api.v1 import api_pb2
from cri.images import to_cri
from cri.runtime import Runtime
from snapshotter import errors as snapshot_errors


async def handle(rt: Runtime, request: api_pb2.ImageStatusRequest) -> api_pb2.ImageStatusResponse:
    try:
        image = rt.images.get(request.image.image)
    except snapshot_errors.NotFound:
        return api_pb2.ImageStatusResponse()  # the CRI answers "not present" with no image
    response = api_pb2.ImageStatusResponse(image=to_cri(image))
    if request.verbose:
        response.info["info"] = json.dumps({"imageSpec": image.config, "chainID": image.chain_id})
    return response
