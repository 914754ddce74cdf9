"""The local registry critest's images are served from: Debian's docker-registry on loopback."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from e2e.images.catalog import Published
from tests.support.registry import RegistryServer, push_image, start_registry


def publish(catalog: Iterable[Published], registry_url: str) -> int:
    """Push every image under each of its tags; returns how many references were pushed."""
    pushed = 0
    for pub in catalog:
        for tag in pub.tags:
            push_image(registry_url, pub.repository, tag, pub.target)
            pushed += 1
    return pushed


def serve(catalog: Iterable[Published], root: Path) -> RegistryServer:
    """A registry on a free loopback port with `catalog` pushed; the caller stops it."""
    server = start_registry(root)
    try:
        publish(catalog, server.url)
    except BaseException:
        server.stop()
        raise
    return server
