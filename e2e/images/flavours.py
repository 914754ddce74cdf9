"""How an image is served: a multi-arch index (amd64 not first), a Docker manifest list, or a
single manifest — so a run exercises platform selection and both media-type families."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final, Literal

from snapshotter import descriptors as d
from tests.support.oci_builder import (
    Image,
    ImageSpec,
    Index,
    Layer,
    directory,
    file,
    layer,
    make_image,
    make_index,
)

Flavour = Literal["oci-index", "docker-list", "oci", "docker"]

_TO_DOCKER: Final = {
    d.OCI_LAYER: d.DOCKER_LAYER,
    d.OCI_LAYER_GZIP: d.DOCKER_LAYER_GZIP,
    d.OCI_LAYER_ZSTD: d.DOCKER_LAYER_ZSTD,
}
FOREIGN: Final = (
    d.Platform(os="linux", architecture="arm64"),
    d.Platform(os="linux", architecture="arm", variant="v7"),
)


def docker_layer(lay: Layer) -> Layer:
    """The same blob declared with the Docker media type."""
    return dataclasses.replace(lay, media_type=_TO_DOCKER.get(lay.media_type, lay.media_type))


def foreign_image(platform: d.Platform, *, docker: bool) -> Image:
    """A marker image for a platform this machine cannot run."""
    marker = layer([directory("etc"), file("etc/arch", f"{platform}\n".encode())])
    layers = [docker_layer(marker) if docker else marker]
    return make_image(layers, platform=platform, docker=docker)


def serve(layers: Sequence[Layer], spec: ImageSpec, flavour: Flavour) -> Image | Index:
    """The amd64 image of `layers` and `spec`, wrapped as `flavour` says."""
    docker = flavour.startswith("docker")
    own = [docker_layer(lay) for lay in layers] if docker else list(layers)
    image = make_image(own, spec, docker=docker)
    if flavour in ("oci", "docker"):
        return image
    return make_index([*(foreign_image(p, docker=docker) for p in FOREIGN), image], docker=docker)
