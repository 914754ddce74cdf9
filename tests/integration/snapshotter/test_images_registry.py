"""ImageStore with the real Puller against a loopback docker-registry, layers really mounted."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.images import ImageStore
from snapshotter.mount import mount_all, unmount_all
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.puller import Puller
from tests.support.oci_builder import (
    PASSWD,
    busybox_image,
    busybox_rootfs_layer,
    directory,
    file,
    layer,
    make_image,
    whiteout,
)

if TYPE_CHECKING:
    from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.registry]


def host_busybox() -> bytes:
    return Path("/bin/busybox").read_bytes()


@dataclass
class Stack:
    root: Path
    content: ContentStore
    snaps: OverlaySnapshotter
    puller: Puller
    store: ImageStore

    def empty(self) -> bool:
        dirs = os.listdir(self.root / "snapshots")
        return self.content.digests() == [] and self.snaps.walk() == [] and dirs == []


@pytest.fixture
async def stack(tmp_path: Path, registry: LocalRegistry) -> AsyncIterator[Stack]:
    root = tmp_path / "root"
    content = ContentStore(root / "content")
    snaps = OverlaySnapshotter(root)
    puller = Puller(content, registry.hosts())
    store = ImageStore(root / "images", puller=puller, content=content, snapshotter=snaps)
    yield Stack(root=root, content=content, snaps=snaps, puller=puller, store=store)
    await puller.aclose()
    store.close()
    snaps.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    t = tmp_path / "mnt"
    t.mkdir()
    yield t
    unmount_all(t, detach=True)


async def test_pull_busybox_and_find_it_by_every_name(
    stack: Stack, registry: LocalRegistry
) -> None:
    ref = registry.ref()
    image = await stack.store.pull(ref)
    assert image.id == registry.busybox.config_digest
    assert image.repo_tags == (ref,)
    repo_digest = f"{registry.host}/library/busybox@{registry.busybox.digest}"
    assert image.repo_digests == (repo_digest,)
    hexid = image.id.removeprefix("sha256:")
    for form in (ref, repo_digest, image.id, hexid, hexid[:12]):
        assert stack.store.get(form).id == image.id, form
    assert stack.store.list() == [image]
    assert stack.store.read_image_file(image.id, "/etc/passwd") == PASSWD


async def test_a_pulled_rootfs_mounts_with_busybox_hardlinks(
    stack: Stack, registry: LocalRegistry, target: Path
) -> None:
    image = await stack.store.pull(registry.ref())
    mount_all(stack.store.prepare_rootfs("ctr", image.id), target)
    busybox = (target / "bin/busybox").stat()
    assert (target / "bin/sh").stat().st_ino == busybox.st_ino
    assert (target / "bin/busybox").read_bytes() == host_busybox()
    assert oct((target / "tmp").stat().st_mode & 0o7777) == oct(0o1777)
    unmount_all(target)
    stack.store.remove_rootfs("ctr")


async def test_multi_arch_index_resolves_to_amd64(stack: Stack, registry: LocalRegistry) -> None:
    assert registry.multi is not None
    image = await stack.store.pull(registry.ref("library/busybox:multi"))
    assert image.id == registry.busybox.config_digest
    assert image.repo_digests == (f"{registry.host}/library/busybox@{registry.multi.digest}",)


async def test_remove_by_one_tag_removes_all_tags(stack: Stack, registry: LocalRegistry) -> None:
    registry.push("tags/busybox", "1", registry.busybox)
    registry.push("tags/busybox", "2", registry.busybox)
    await stack.store.pull(registry.ref("tags/busybox:1"))
    image = await stack.store.pull(registry.ref("tags/busybox:2"))
    assert len(image.repo_tags) == 2
    await stack.store.remove(registry.ref("tags/busybox:2"))
    with pytest.raises(errors.NotFound):
        stack.store.get(registry.ref("tags/busybox:1"))
    assert stack.empty()


async def test_shared_layers_are_freed_with_the_last_image(
    stack: Stack, registry: LocalRegistry
) -> None:
    base = busybox_rootfs_layer()
    a = make_image([base, layer([directory("a"), file("a/x", b"a"), whiteout("etc/group")])])
    b = make_image([base, layer([directory("b"), file("b/x", b"b")])])
    registry.push("shared/a", "1", a)
    registry.push("shared/b", "1", b)
    image_a = await stack.store.pull(registry.ref("shared/a:1"))
    image_b = await stack.store.pull(registry.ref("shared/b:1"))
    assert len(stack.snaps.walk()) == 3
    assert stack.store.read_image_file(image_a.id, "/etc/group") is None  # whited out
    await stack.store.remove(image_a.id)
    assert base.digest in stack.content.digests()
    assert a.layers[1].digest not in stack.content.digests()
    assert stack.store.read_image_file(image_b.id, "/etc/group") is not None
    await stack.store.remove(registry.ref("shared/b:1"))
    assert stack.empty()
    assert os.listdir(stack.root / "content" / "ingest") == []


async def test_recover_after_a_crash_mid_removal(
    stack: Stack, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = await stack.store.pull(registry.ref())

    def crash(key: str) -> None:
        raise SystemExit("crash while removing snapshots")

    monkeypatch.setattr(stack.snaps, "remove", crash)
    with pytest.raises(SystemExit):
        await stack.store.remove(image.id)
    monkeypatch.undo()
    store = ImageStore(
        stack.root / "images", puller=stack.puller, content=stack.content, snapshotter=stack.snaps
    )
    try:
        assert store.list() == []
        store.recover()
    finally:
        store.close()
    assert stack.empty()


async def test_a_docker_media_type_image_pulls_too(stack: Stack, registry: LocalRegistry) -> None:
    image = busybox_image(docker=True, compression="gzip")
    registry.push("docker/busybox", "latest", image)
    pulled = await stack.store.pull(registry.ref("docker/busybox:latest"))
    assert pulled.id == image.config_digest
