"""Pulling from Debian's docker-registry on loopback: formats, references, hostile content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from snapshotter import descriptors as d
from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.puller import Progress, Puller
from snapshotter.reference import parse
from snapshotter.registry.hosts import RegistryHosts
from tests.support import oci_builder as ob
from tests.support.fixtures_registry import LocalRegistry
from tests.support.registry import free_port

pytestmark = pytest.mark.registry


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


@pytest.fixture
async def puller(store: ContentStore, registry: LocalRegistry) -> AsyncIterator[Puller]:
    p = Puller(store, registry.hosts())
    yield p
    await p.aclose()


def assert_stored(store: ContentStore, image: ob.Image) -> None:
    for digest, data in image.blobs().items():
        assert store.path(digest).read_bytes() == data
    assert store.read(image.digest) == image.manifest
    assert store.ingests() == []


async def test_pull_busybox_by_tag(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    events: list[Progress] = []
    result = await puller.pull(parse(registry.ref()), progress=events.append)
    image = registry.busybox
    assert result.manifest_digest == image.digest
    assert result.config_digest == image.config_digest
    assert result.config["config"]["Cmd"] == ["sh"]
    assert result.diff_ids == (image.layers[0].diff_id,)
    assert result.layers[0].media_type == d.OCI_LAYER_GZIP
    assert events[-1].done == events[-1].total == image.layers[0].size
    assert_stored(store, image)


async def test_pull_multi_arch_index_selects_amd64(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    assert registry.multi is not None
    assert registry.multi.images[0].platform.architecture != "amd64"
    result = await puller.pull(parse(registry.ref("library/busybox:multi")))
    assert result.index_digest == registry.multi.digest
    assert result.manifest_digest == registry.busybox.digest
    assert store.exists(registry.multi.digest)
    assert not store.exists(registry.multi.images[0].digest)


async def test_pull_multi_layer_zstd_and_plain(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    layers = [
        ob.busybox_rootfs_layer("zstd"),
        ob.layer([ob.directory("etc"), ob.file("etc/motd", b"zstd layer\n")], "zstd"),
        ob.layer([ob.opaque("etc"), ob.file("etc/hostname", b"x\n")], ""),
        ob.layer([ob.whiteout("etc/hostname")], "gzip"),
    ]
    image = ob.make_image(layers, ob.ImageSpec(entrypoint=["/bin/sh"], working_dir="/tmp"))
    registry.push("test/multilayer", "v1", image)
    result = await puller.pull(parse(registry.ref("test/multilayer:v1")))
    assert [x.compression for x in result.layers] == ["zstd", "zstd", "", "gzip"]
    assert result.diff_ids == tuple(x.diff_id for x in layers)
    assert_stored(store, image)


async def test_pull_docker_schema2_manifest_list(registry: LocalRegistry, puller: Puller) -> None:
    image = ob.busybox_image(docker=True)
    registry.push("test/docker", "v2", ob.multiarch_index(image, docker=True))
    result = await puller.pull(parse(registry.ref("test/docker:v2")))
    assert result.manifest_digest == image.digest
    assert result.layers[0].media_type == d.DOCKER_LAYER_GZIP


async def test_pull_by_digest_and_tag_plus_digest(registry: LocalRegistry, puller: Puller) -> None:
    digest = registry.busybox.digest
    by_digest = await puller.pull(parse(registry.ref(f"library/busybox@{digest}")))
    both = await puller.pull(parse(registry.ref(f"library/busybox:latest@{digest}")))
    assert by_digest.manifest_digest == both.manifest_digest == digest
    assert by_digest.reference.tag is None and both.reference.tag == "latest"


async def test_unknown_tag_repository_and_digest(registry: LocalRegistry, puller: Puller) -> None:
    for name in ("library/busybox:nope", "no/such-repo:1", f"library/busybox@sha256:{'0' * 64}"):
        with pytest.raises(errors.NotFound, match="404"):
            await puller.pull(parse(registry.ref(name)))


async def test_unreachable_registry_is_unavailable(
    store: ContentStore, registry: LocalRegistry
) -> None:
    host = f"127.0.0.1:{free_port()}"
    p = Puller(store, RegistryHosts(config_path=None, insecure=[host]), retries=1)
    with pytest.raises(errors.Unavailable, match="gave up after 2 attempts"):
        await p.pull(parse(f"{host}/library/busybox:latest"))
    await p.aclose()


async def test_corrupt_blob_is_rejected_and_leaves_nothing(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    image = ob.make_image([ob.random_layer(200_000)])
    registry.push("test/corrupt", "v1", image)
    lay = image.layers[0]
    registry.server.corrupt_blob(lay.digest, bytes(b ^ 0x5A for b in lay.data))
    with pytest.raises(errors.InvalidArgument, match=f"blob {lay.digest}: content has digest"):
        await puller.pull(parse(registry.ref("test/corrupt:v1")))
    assert not store.exists(lay.digest)
    assert lay.digest not in store.ingests()
    assert not (store.root / "blobs/sha256" / lay.digest[7:]).exists()


async def test_declared_size_mismatch_is_rejected(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    image = ob.make_image([ob.random_layer(50_000)])
    registry.push("test/size", "ok", image)
    bigger = ob.with_declared_size(image, 0, image.layers[0].size + 100)
    registry.push("test/size", "lie", bigger)
    with pytest.raises(errors.InvalidArgument, match=r"got .* bytes, expected"):
        await puller.pull(parse(registry.ref("test/size:lie")))
    assert not store.exists(image.layers[0].digest)


async def test_partial_ingest_is_resumed_with_range(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    image = ob.make_image([ob.random_layer(3_000_000)])
    registry.push("test/resume", "v1", image)
    lay = image.layers[0]
    with store.ingest(lay.digest, lay.size) as ingest:  # as a crash mid-download leaves it
        ingest.write(lay.data[:1_234_567])
    events: list[Progress] = []
    await puller.pull(parse(registry.ref("test/resume:v1")), progress=events.append)
    first = next(e for e in events if e.layer == lay.digest)
    assert first.done > 1_234_567  # counting started at the partial: the registry honoured Range
    assert_stored(store, image)


async def test_second_pull_downloads_nothing(
    registry: LocalRegistry, puller: Puller, store: ContentStore
) -> None:
    await puller.pull(parse(registry.ref()))
    before = {p: p.stat().st_mtime_ns for p in (store.root / "blobs/sha256").iterdir()}
    events: list[Progress] = []
    await puller.pull(parse(registry.ref()), progress=events.append)
    after = {p: p.stat().st_mtime_ns for p in (store.root / "blobs/sha256").iterdir()}
    assert before == after
    assert [(e.done, e.total) for e in events] == [(events[0].total, events[0].total)]
