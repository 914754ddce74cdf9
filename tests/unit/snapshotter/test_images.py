"""ImageStore over a FakePuller, a real ContentStore and a real OverlaySnapshotter (no mounts).

Layers here hold only what an unprivileged unpack can create; whiteouts, owners
and devices are in tests/integration/snapshotter/test_images_*.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.api import Image, Kind, Mount
from snapshotter.content import ContentStore
from snapshotter.images import RESUME_GRACE, ImageStore, chain_ids
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.testing import FakeImage, FakePuller, LayerBuilder, build_image, sha256

BUSYBOX = "docker.io/library/busybox:latest"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"


def base_layer() -> bytes:
    return (
        LayerBuilder()
        .dir("etc")
        .file("etc/passwd", PASSWD)
        .file("etc/group", b"root:x:0:\n")
        .dir("bin")
        .file("bin/busybox", b"binary", mode=0o755)
        .hardlink("bin/sh", "bin/busybox")
        .build()
    )


def layer(name: str, data: bytes = b"x") -> bytes:
    return LayerBuilder().dir("data").file(f"data/{name}", data).build()


class CountingSnapshotter(OverlaySnapshotter):
    """The real snapshotter, counting unpacks and able to fail removals (a 'crash')."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, sync=False)
        self.unpacks = 0
        self.crash_on_remove = False
        self.unpacking = threading.Event()  # set when an unpack starts
        self.hold = threading.Event()  # unpacks wait for it
        self.hold.set()

    def prepare(self, key: str, parent: str | None = None, **kw: object) -> list[Mount]:
        if key.startswith("extract/"):
            self.unpacks += 1
            self.unpacking.set()
            assert self.hold.wait(10)
        return super().prepare(key, parent, **kw)  # type: ignore[arg-type]

    def remove(self, key: str) -> None:
        if self.crash_on_remove:
            raise RuntimeError("simulated crash")
        super().remove(key)


@dataclass
class Env:
    root: Path
    content: ContentStore
    snaps: CountingSnapshotter
    puller: FakePuller
    store: ImageStore

    def add(self, ref: str, image: FakeImage) -> FakeImage:
        self.puller.add(ref, image)
        return image

    def reopen(self) -> ImageStore:
        self.store.close()
        self.snaps.close()
        self.snaps = CountingSnapshotter(self.root)
        self.store = ImageStore(
            self.root / "images", puller=self.puller, content=self.content, snapshotter=self.snaps
        )
        return self.store

    def empty(self) -> bool:
        snapdirs = os.listdir(self.root / "snapshots")
        return self.content.digests() == [] and self.snaps.walk() == [] and snapdirs == []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    content = ContentStore(tmp_path / "content")
    snaps = CountingSnapshotter(tmp_path)
    puller = FakePuller(content)
    store = ImageStore(
        tmp_path / "images",
        puller=puller,
        content=content,
        snapshotter=snaps,
        pinned=["busybox:pinned"],
    )
    e = Env(root=tmp_path, content=content, snaps=snaps, puller=puller, store=store)
    yield e
    e.store.close()
    e.snaps.close()


async def test_pull_records_image_layers_and_blobs(env: Env) -> None:
    img = env.add(BUSYBOX, build_image([base_layer(), layer("a")], index=True))
    image = await env.store.pull("busybox")
    assert image.id == img.config_digest
    assert image.repo_tags == (BUSYBOX,)
    assert image.repo_digests == (f"docker.io/library/busybox@{img.index_digest}",)
    assert image.chain_id == chain_ids(img.diff_ids)[-1]
    assert image.config["rootfs"]["diff_ids"] == list(img.diff_ids)
    assert image.size > 0 and not image.pinned
    committed = [i.key for i in env.snaps.walk()]
    assert committed == chain_ids(img.diff_ids)
    assert set(env.content.digests()) == set(img.blobs)


def test_chain_ids_follow_the_oci_definition() -> None:
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert chain_ids((d1, d2)) == [d1, sha256(f"{d1} {d2}".encode())]


async def test_get_by_every_reference_form(env: Env) -> None:
    img = env.add(BUSYBOX, build_image([base_layer()]))
    env.add("docker.io/library/busybox@" + img.manifest_digest, img)
    image = await env.store.pull("busybox:latest")
    hexid = image.id.removeprefix("sha256:")
    forms = [
        "busybox",
        "busybox:latest",
        "library/busybox:latest",
        BUSYBOX,
        f"busybox@{img.manifest_digest}",
        f"docker.io/library/busybox@{img.manifest_digest}",
        image.id,
        hexid,
        hexid[:12],
        "sha256:" + hexid[:12],
    ]
    for form in forms:
        assert env.store.get(form).id == image.id, form
    for missing in ["busybox:other", "alpine", hexid[:4], "f" * 64, "sha256:" + "0" * 64, ""]:
        with pytest.raises(errors.NotFound):
            env.store.get(missing)


async def test_pull_by_digest_records_no_tag(env: Env) -> None:
    img = build_image([base_layer()])
    ref = f"docker.io/library/busybox@{img.manifest_digest}"
    env.add(ref, img)
    image = await env.store.pull(ref)
    assert image.repo_tags == ()
    assert image.repo_digests == (ref,)


async def test_remove_by_one_tag_removes_every_tag_and_frees_everything(env: Env) -> None:
    img = build_image([base_layer(), layer("a")])
    env.add(BUSYBOX, img)
    env.add("docker.io/library/busybox:1", img)
    await env.store.pull("busybox")
    image = await env.store.pull("busybox:1")
    assert set(image.repo_tags) == {BUSYBOX, "docker.io/library/busybox:1"}
    await env.store.remove("busybox:1")
    with pytest.raises(errors.NotFound):
        env.store.get("busybox:latest")
    assert env.store.list() == []
    assert env.empty()
    await env.store.remove("busybox:1")  # idempotent
    await env.store.remove(image.id)


async def test_shared_layers_survive_until_the_last_image_goes(env: Env) -> None:
    a = env.add("docker.io/library/a:1", build_image([base_layer(), layer("a")]))
    b = env.add("docker.io/library/b:1", build_image([base_layer(), layer("b")]))
    await env.store.pull("a:1")
    image_b = await env.store.pull("b:1")
    assert env.snaps.unpacks == 3  # the base layer once
    await env.store.remove("a:1")
    assert [i.key for i in env.snaps.walk()] == chain_ids(b.diff_ids)
    assert set(env.content.digests()) == set(b.blobs)
    assert a.layers[1].digest not in env.content.digests()
    assert env.store.read_image_file(image_b.id, "/etc/passwd") == PASSWD
    await env.store.remove("b:1")
    assert env.empty()


async def test_concurrent_pulls_share_the_unpack(env: Env) -> None:
    env.add(BUSYBOX, build_image([base_layer(), layer("a")]))
    release = asyncio.Event()

    async def gate() -> None:
        await release.wait()

    env.puller.gate = gate
    pulls = [asyncio.create_task(env.store.pull("busybox")) for _ in range(3)]
    await asyncio.sleep(0)  # let every pull reach the gate
    release.set()
    images = await asyncio.gather(*pulls)
    assert len({i.id for i in images}) == 1
    assert env.snaps.unpacks == 2
    assert all(not i.key.startswith("extract/") for i in env.snaps.walk())


async def test_a_pull_cancelled_mid_unpack_waits_for_it_and_leaves_nothing(env: Env) -> None:
    env.add(BUSYBOX, build_image([base_layer(), layer("a")]))
    env.snaps.hold.clear()
    pull = asyncio.create_task(env.store.pull("busybox"))
    assert await asyncio.to_thread(env.snaps.unpacking.wait, 10)
    pull.cancel()
    await asyncio.sleep(0.05)
    assert not pull.done()  # the unpack thread is still running: the pull waits for it
    env.snaps.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await pull
    assert env.store.list() == []
    assert env.empty()
    assert (await env.store.pull("busybox")).repo_tags == (BUSYBOX,)


async def test_a_moved_tag_leaves_the_old_image_its_digest(env: Env) -> None:
    old = env.add(BUSYBOX, build_image([base_layer(), layer("v1")]))
    first = await env.store.pull("busybox")
    new = env.add(BUSYBOX, build_image([base_layer(), layer("v2")]))
    second = await env.store.pull("busybox")
    assert second.id == new.config_digest != first.id
    stale = env.store.get(first.id)
    assert stale.repo_tags == ()
    assert stale.repo_digests == (f"docker.io/library/busybox@{old.manifest_digest}",)
    assert env.store.get("busybox").id == second.id


async def test_sweeps_wait_for_pulls_in_flight(env: Env) -> None:
    a = env.add("docker.io/library/a:1", build_image([layer("a")]))
    env.add("docker.io/library/b:1", build_image([layer("b")]))
    await env.store.pull("a:1")
    entered, release = asyncio.Event(), asyncio.Event()

    async def gate() -> None:
        entered.set()
        await release.wait()

    env.puller.gate = gate
    pull_b = asyncio.create_task(env.store.pull("b:1"))
    await entered.wait()
    await env.store.remove("a:1")
    with pytest.raises(errors.NotFound):
        env.store.get("a:1")
    assert a.layers[0].digest in env.content.digests()  # the sweep is deferred
    release.set()
    await pull_b
    assert a.layers[0].digest not in env.content.digests()
    assert [i.key for i in env.snaps.walk()] != []  # b's layer stays


async def test_a_failed_unpack_leaves_nothing_behind(env: Env) -> None:
    bad = LayerBuilder().file("../escape", b"x").build()
    env.add(BUSYBOX, build_image([base_layer(), bad]))
    with pytest.raises(errors.InvalidArgument, match="escape"):
        await env.store.pull("busybox")
    assert env.store.list() == []
    assert env.empty()
    assert not (env.root / "escape").exists()


async def test_a_layer_whose_size_the_manifest_misstates_is_refused(env: Env) -> None:
    img = build_image([base_layer()])
    lay = img.layers[0]
    wrong = type(lay)(media_type=lay.media_type, digest=lay.digest, size=lay.size - 1)
    env.add(BUSYBOX, dataclasses.replace(img, layers=(wrong,)))
    with pytest.raises(errors.InvalidArgument, match=f"{lay.digest}"):
        await env.store.pull("busybox")
    assert env.empty()


async def test_a_diff_id_mismatch_is_refused(env: Env) -> None:
    img = build_image([base_layer()])
    bogus = ("sha256:" + "e" * 64,)
    env.add(BUSYBOX, dataclasses.replace(img, diff_ids=bogus))
    with pytest.raises(errors.InvalidArgument, match="diff_id"):
        await env.store.pull("busybox")
    assert env.empty()


async def test_puller_errors_pass_through_and_leave_nothing(env: Env) -> None:
    env.puller.fail[BUSYBOX] = errors.Unavailable("registry down")
    with pytest.raises(errors.Unavailable, match="registry down"):
        await env.store.pull("busybox")
    with pytest.raises(errors.NotFound):
        await env.store.pull("nothing-here")
    with pytest.raises(errors.InvalidArgument):
        await env.store.pull("Not A Ref")
    assert env.empty()


async def test_rootfs_lifecycle(env: Env) -> None:
    img = env.add(BUSYBOX, build_image([base_layer(), layer("a")]))
    image = await env.store.pull("busybox")
    (m,) = env.store.prepare_rootfs("c1", image.id)
    assert m.type == "overlay" and len(m.option("lowerdir").split(":")) == 2  # type: ignore[union-attr]
    assert env.store.rootfs_mounts("c1") == [m]
    with pytest.raises(errors.AlreadyExists, match="rootfs c1"):
        env.store.prepare_rootfs("c1", image.id)
    with pytest.raises(errors.NotFound):
        env.store.prepare_rootfs("c2", "sha256:" + "0" * 64)
    (v,) = env.store.view_rootfs("v1", "busybox")
    assert v.type == "overlay" and v.option("upperdir") is None
    assert sorted(env.store.rootfs_keys()) == ["c1", "v1"]
    with pytest.raises(errors.NotFound, match="rootfs c9"):
        env.store.rootfs_mounts("c9")
    # the image can go while containers use it; its layers stay until their rootfs go
    await env.store.remove(image.id)
    assert env.snaps.stat(chain_ids(img.diff_ids)[-1]).kind is Kind.COMMITTED
    assert env.content.digests() == []
    env.store.remove_rootfs("c1")
    env.store.remove_rootfs("c1")
    env.store.remove_rootfs("v1")
    assert env.store.rootfs_keys() == []
    assert env.empty()


async def test_read_image_file_merges_layers_and_confines_symlinks(env: Env) -> None:
    upper = (
        LayerBuilder()
        .file("etc/group", b"upper group\n")
        .symlink("etc/abs", "/etc/passwd")
        .symlink("etc/rel", "../etc/./passwd")
        .symlink("etc/escape", "../../../../../etc/group")
        .symlink("etc/loop", "loop")
        .symlink("lnk", "etc")
        .file("big", b"x" * 100)
        .build()
    )
    image = await _pull(env, [base_layer(), upper])
    read = env.store.read_image_file
    assert read(image.id, "/etc/passwd") == PASSWD
    assert read(image.id, "etc/group") == b"upper group\n"
    assert read(image.id, "/etc/abs") == PASSWD
    assert read(image.id, "/etc/rel") == PASSWD
    assert read(image.id, "/etc/escape") == b"upper group\n"  # ".." stops at the image root
    assert read(image.id, "/lnk/passwd") == PASSWD
    assert read(image.id, "/etc/loop") is None
    assert read(image.id, "/etc/shadow") is None
    assert read(image.id, "/etc") is None
    assert read(image.id, "/etc/passwd/x") is None
    with pytest.raises(errors.InvalidArgument, match="larger than 10"):
        read(image.id, "/big", max_size=10)


async def _pull(env: Env, layers: list[bytes], ref: str = BUSYBOX) -> Image:
    env.add(ref, build_image(layers))
    return await env.store.pull(ref)


async def test_pinned_images_are_marked(env: Env) -> None:
    env.add("docker.io/library/busybox:pinned", build_image([base_layer()]))
    assert (await env.store.pull("busybox:pinned")).pinned


async def test_fs_usage_counts_snapshots(env: Env) -> None:
    empty = env.store.fs_usage()
    await _pull(env, [base_layer(), layer("a", b"y" * 100_000)])
    usage = env.store.fs_usage()
    assert usage.mountpoint.startswith("/")
    assert str(env.root.resolve()).startswith(usage.mountpoint)
    assert usage.used_bytes >= empty.used_bytes + 100_000
    assert usage.inodes_used > empty.inodes_used


async def test_images_survive_a_reopen(env: Env) -> None:
    image = await _pull(env, [base_layer()])
    store = env.reopen()
    assert store.get("busybox") == image
    assert store.read_image_file(image.id, "/etc/passwd") == PASSWD


async def test_recover_finishes_a_removal_interrupted_by_a_crash(env: Env) -> None:
    image = await _pull(env, [base_layer(), layer("a")])
    env.snaps.crash_on_remove = True
    with pytest.raises(RuntimeError, match="simulated crash"):
        await env.store.remove(image.id)
    assert env.content.digests() != [] and env.snaps.walk() != []  # files still there
    store = env.reopen()
    with pytest.raises(errors.NotFound):
        store.get(image.id)  # the removal was committed before any file went
    store.recover()
    assert env.empty()


async def test_recover_removes_crash_leftovers_and_keeps_images(env: Env) -> None:
    image = await _pull(env, [base_layer()])
    env.snaps.prepare("extract/dead/sha256:" + "1" * 64)  # an unpack that never finished
    (env.root / "snapshots" / "new-0123").mkdir()
    (env.root / "snapshots" / "999").mkdir()
    orphan = env.content.write_blob(b"orphan blob")
    partial = env.content.ingest(sha256(b"partial"), 7)
    partial.write(b"par")
    partial.close()
    (env.root / "images" / "tmp" / "x").mkdir(parents=True)
    env.store.recover()
    assert [i.key for i in env.snaps.walk()] == [image.chain_id]
    assert sorted(os.listdir(env.root / "snapshots")) == ["1"]
    assert orphan not in env.content.digests()
    assert env.content.ingests() == []
    assert not (env.root / "images" / "tmp").exists()
    assert env.store.read_image_file(image.id, "/etc/passwd") == PASSWD


def test_database_is_wal_and_durable(env: Env) -> None:
    db = sqlite3.connect(env.root / "images" / "images.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _leftovers(env: Env) -> tuple[str, str]:
    """A whole blob and a partial download no image lists, as a pull cut short leaves them."""
    blob = env.content.write_blob(b"fetched before the crash")
    partial = env.content.ingest(sha256(b"partial download"), 16)
    partial.write(b"partial")
    partial.close()
    return blob, sha256(b"partial download")


async def test_crash_mid_pull_keeps_what_it_fetched_until_the_grace_runs_out(env: Env) -> None:
    blob, partial = _leftovers(env)
    env.store._journal_pull("docker.io/library/busybox:latest")  # the crash left it
    store = env.reopen()
    store.recover()
    assert blob in env.content.digests() and env.content.ingests() == [partial]
    store.expire_leftovers()  # young: a retried pull resumes from them
    assert blob in env.content.digests() and env.content.ingests() == [partial]
    _age(env.content.path(blob), RESUME_GRACE + 1)
    _age(
        env.root / "content" / "ingest" / partial.removeprefix("sha256:") / "data", RESUME_GRACE + 1
    )
    store.expire_leftovers()
    assert blob not in env.content.digests() and env.content.ingests() == []


async def test_recover_after_a_clean_stop_frees_every_leftover(env: Env) -> None:
    _leftovers(env)
    store = env.reopen()
    store.recover()
    assert env.empty() and env.content.ingests() == []


async def test_sweep_after_a_removal_keeps_only_a_young_partial_download(env: Env) -> None:
    image = await _pull(env, [base_layer()])
    blob, partial = _leftovers(env)
    await env.store.remove(image.id)
    assert blob not in env.content.digests()
    assert env.content.ingests() == [partial]  # a failed pull's retry may still resume it
