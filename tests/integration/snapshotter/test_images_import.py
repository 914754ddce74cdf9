"""ImageStore.import_archive: OCI layouts and docker-save tars, plain, compressed, hostile."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.images import ImageStore
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.testing import FakePuller
from tests.support import oci_builder as ob

pytestmark = pytest.mark.root


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    root = tmp_path / "root"
    content = ContentStore(root / "content")
    snaps = OverlaySnapshotter(root, sync=False)
    s = ImageStore(root / "images", puller=FakePuller(content), content=content, snapshotter=snaps)
    yield s
    s.close()
    snaps.close()


def tar_dir(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def raw_tar(dest: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(dest, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


async def test_oci_layout_with_an_index(store: ImageStore, tmp_path: Path) -> None:
    image = ob.busybox_image()
    index = ob.multiarch_index(image)
    ob.write_oci_layout(tmp_path / "layout", index, ref_name="registry.k8s.io/pause:3.9")
    (imported,) = await store.import_archive(tar_dir(tmp_path / "layout", tmp_path / "l.tar"))
    assert imported.id == image.config_digest
    assert imported.repo_tags == ("registry.k8s.io/pause:3.9",)
    assert imported.repo_digests == (f"registry.k8s.io/pause@{index.digest}",)
    assert store.read_image_file(imported.id, "/etc/passwd") == ob.PASSWD


async def test_oci_layout_with_a_bare_tag_gets_no_name(store: ImageStore, tmp_path: Path) -> None:
    ob.write_oci_layout(tmp_path / "layout", ob.busybox_image(), ref_name="latest")
    (imported,) = await store.import_archive(tar_dir(tmp_path / "layout", tmp_path / "l.tar"))
    assert imported.repo_tags == () and imported.repo_digests == ()
    assert store.get(imported.id) == imported


@pytest.mark.parametrize("oci", [False, True])
async def test_docker_save(store: ImageStore, tmp_path: Path, oci: bool) -> None:
    image = ob.make_image(
        [ob.busybox_rootfs_layer(), ob.layer([ob.file("etc/motd", b"hi")], "zstd")]
    )
    path = tmp_path / "save.tar"
    ob.write_docker_save(path, image, repo_tags=["busybox:1.0", "example.com/x/y:2"], oci=oci)
    (imported,) = await store.import_archive(path)
    assert imported.id == image.config_digest
    assert imported.repo_tags == ("docker.io/library/busybox:1.0", "example.com/x/y:2")
    assert store.read_image_file(imported.id, "/etc/motd") == b"hi"
    # importing again is idempotent
    assert await store.import_archive(path) == [store.get(imported.id)]


async def test_gzipped_archive(store: ImageStore, tmp_path: Path) -> None:
    image = ob.busybox_image()
    ob.write_docker_save(tmp_path / "save.tar", image, repo_tags=["busybox:gz"])
    gz = tmp_path / "save.tar.gz"
    gz.write_bytes(gzip.compress((tmp_path / "save.tar").read_bytes(), compresslevel=1))
    (imported,) = await store.import_archive(gz)
    assert imported.id == image.config_digest
    assert not (store.root / "tmp").exists() or os.listdir(store.root / "tmp") == []


async def test_reimporting_a_tag_drops_the_image_left_without_names(
    store: ImageStore, tmp_path: Path
) -> None:
    first = ob.make_image([ob.layer([ob.file("v", b"1")])])
    second = ob.make_image([ob.layer([ob.file("v", b"2")])])
    ob.write_docker_save(tmp_path / "1.tar", first, repo_tags=["app:latest"])
    ob.write_docker_save(tmp_path / "2.tar", second, repo_tags=["app:latest"])
    await store.import_archive(tmp_path / "1.tar")
    await store.import_archive(tmp_path / "2.tar")
    assert [i.id for i in store.list()] == [second.config_digest]
    assert first.layers[0].diff_id not in store._content.digests()


def docker_manifest(config: str, layers: list[str]) -> bytes:
    return json.dumps([{"Config": config, "RepoTags": ["evil:1"], "Layers": layers}]).encode()


async def test_hostile_archives_are_refused(store: ImageStore, tmp_path: Path) -> None:
    image = ob.make_image([ob.layer(ob.hostile_entries()["symlink_escape"])])
    cases: dict[str, tuple[dict[str, bytes], str]] = {
        "config outside": (
            {"manifest.json": docker_manifest("../../../etc/passwd", [])},
            "no member",
        ),
        "layer path escapes": (
            {
                "c.json": image.config,
                "manifest.json": docker_manifest("c.json", ["/etc/shadow"]),
            },
            "no member",
        ),
        "hostile layer": (
            {
                "c.json": image.config,
                "l.tar": ob._decompress(image.layers[0]),
                "manifest.json": docker_manifest("c.json", ["l.tar"]),
            },
            "'link' is a symlink",
        ),
        "not json": ({"manifest.json": b"{nope"}, "not valid JSON"),
        "unknown format": ({"hello": b"x"}, "neither"),
        "duplicate members": ({"manifest.json": b"[]", "./manifest.json": b"[]"}, "twice"),
    }
    root = store.root.parent
    before = sorted(str(p) for p in root.rglob("*") if ".db" not in p.name)
    for name, (members, message) in cases.items():
        path = raw_tar(tmp_path / "evil.tar", members)
        with pytest.raises(errors.InvalidArgument, match=message):
            await store.import_archive(path)
        after = sorted(str(p) for p in root.rglob("*") if ".db" not in p.name)
        assert after == before, name
    assert not os.path.exists("/tmp/escape")  # noqa: ASYNC240 - a test assertion


async def test_oci_blob_with_the_wrong_digest_is_refused(store: ImageStore, tmp_path: Path) -> None:
    image = ob.busybox_image()
    ob.write_oci_layout(tmp_path / "layout", image, ref_name="x/y:1")
    blob = tmp_path / "layout/blobs/sha256" / image.layers[0].digest.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(errors.InvalidArgument, match=image.layers[0].digest):
        await store.import_archive(tar_dir(tmp_path / "layout", tmp_path / "l.tar"))
    assert store.list() == []


async def test_missing_archive(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await store.import_archive(tmp_path / "nope.tar")
