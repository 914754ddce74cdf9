"""The overlay snapshotter's mounts, really mounted: layer semantics, read-only views, usage."""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshotter import errors, layerview, overlay
from snapshotter.api import Mount
from snapshotter.mount import (
    PAGE_SIZE,
    mount_all,
    parse_options,
    unmount,
    unmount_all,
    writable_dir,
)
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.testing import LayerBuilder
from snapshotter.unpack import apply_layer

pytestmark = pytest.mark.root


@pytest.fixture
def snaps(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(tmp_path / "root", sync=False)
    yield s
    s.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    t = tmp_path / "mnt"
    t.mkdir()
    yield t
    unmount_all(t, detach=True)


def add_layer(snaps: OverlaySnapshotter, name: str, parent: str | None, tar: bytes) -> None:
    key = f"extract-{name}"
    mounts = snaps.prepare(key, parent)
    apply_layer(io.BytesIO(tar), "", writable_dir(mounts), layer=name)
    snaps.commit(name, key)


def three_layers(snaps: OverlaySnapshotter) -> None:
    add_layer(
        snaps,
        "l1",
        None,
        LayerBuilder()
        .dir("bin")
        .file("bin/busybox", b"bb", mode=0o4755, uid=0, gid=0)
        .hardlink("bin/sh", "bin/busybox")
        .dir("etc")
        .file("etc/gone", b"old")
        .dir("etc/conf.d")
        .file("etc/conf.d/lower", b"lower")
        .file("etc/keep", b"kept")
        .build(),
    )
    add_layer(
        snaps,
        "l2",
        "l1",
        LayerBuilder()
        .whiteout("etc/gone")
        .file("home/user/file", b"mine", mode=0o640, uid=1000, gid=2000)
        .dir("home/user", mode=0o700, uid=1000, gid=2000)
        .build(),
    )
    add_layer(
        snaps,
        "l3",
        "l2",
        LayerBuilder().opaque("etc/conf.d").file("etc/conf.d/upper", b"upper").build(),
    )


def test_three_layers_merge_like_the_image_says(snaps: OverlaySnapshotter, target: Path) -> None:
    three_layers(snaps)
    mount_all(snaps.prepare("ctr", "l3"), target)
    assert not (target / "etc/gone").exists()
    assert (target / "etc/keep").read_bytes() == b"kept"
    assert os.listdir(target / "etc/conf.d") == ["upper"]
    busybox = (target / "bin/busybox").stat()
    assert stat.S_IMODE(busybox.st_mode) == 0o4755
    assert busybox.st_ino == (target / "bin/sh").stat().st_ino
    home = (target / "home/user").stat()
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 2000, 0o700)
    f = (target / "home/user/file").stat()
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 2000, 0o640)


def test_writes_land_in_the_active_snapshot_only(snaps: OverlaySnapshotter, target: Path) -> None:
    three_layers(snaps)
    mounts = snaps.prepare("ctr", "l3")
    mount_all(mounts, target)
    (target / "etc/keep").write_bytes(b"changed")
    (target / "new").write_bytes(b"n")
    (target / "bin/busybox").unlink()
    unmount(target)
    upper = writable_dir(mounts)
    assert (upper / "new").read_bytes() == b"n"
    assert (upper / "etc/keep").read_bytes() == b"changed"
    assert stat.S_ISCHR((upper / "bin/busybox").lstat().st_mode)  # a whiteout
    (l1,) = [d for d in snaps.layer_dirs("l1")]
    assert (l1 / "etc/keep").read_bytes() == b"kept"
    assert (l1 / "bin/busybox").read_bytes() == b"bb"


def test_views_are_read_only(snaps: OverlaySnapshotter, target: Path) -> None:
    three_layers(snaps)
    for key, parent in (("v1", "l1"), ("v3", "l3")):
        mount_all(snaps.view(key, parent), target)
        assert (target / "etc/keep").read_bytes() == b"kept"
        with pytest.raises(OSError) as exc:
            (target / "x").write_bytes(b"x")
        assert exc.value.errno == errno.EROFS
        unmount(target)


def test_usage_counts_what_the_snapshot_holds(snaps: OverlaySnapshotter, target: Path) -> None:
    mounts = snaps.prepare("a")
    before = snaps.usage("a")
    mount_all(mounts, target)
    for i in range(10):
        (target / f"f{i}").write_bytes(os.urandom(64 << 10))
    os.link(target / "f0", target / "hard")
    unmount(target)
    after = snaps.usage("a")
    assert after.inodes == before.inodes + 10
    assert after.size >= before.size + 10 * (64 << 10)
    snaps.commit("c", "a")
    assert snaps.usage("c") == after


def test_remove_deletes_files_but_refuses_parents(snaps: OverlaySnapshotter) -> None:
    three_layers(snaps)
    dirs = snaps.layer_dirs("l3")
    with pytest.raises(errors.FailedPrecondition):
        snaps.remove("l2")
    snaps.remove("l3")
    assert not dirs[0].parent.exists()
    assert dirs[1].exists()


def test_a_long_lower_chain_still_mounts(snaps: OverlaySnapshotter, target: Path) -> None:
    parent = None
    for i in range(90):
        tar = LayerBuilder().file(f"layer{i}", str(i).encode()).build()
        add_layer(snaps, f"layer-{i:03}", parent, tar)
        parent = f"layer-{i:03}"
    (m,) = snaps.prepare("ctr", parent)
    assert len(parse_options(m.options)[1]) >= PAGE_SIZE  # too long for mount(2) as it is
    mount_all([m], target)
    assert (target / "layer0").read_bytes() == b"0"
    assert (target / "layer89").read_bytes() == b"89"
    assert Path.cwd() != Path(snaps.root / "snapshots")  # nobody else saw the chdir


def test_too_many_layers_are_refused_up_front(
    snaps: OverlaySnapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlay, "MAX_LOWERS", 2)
    add_layer(snaps, "a", None, LayerBuilder().build())
    add_layer(snaps, "b", "a", LayerBuilder().build())
    add_layer(snaps, "c", "b", LayerBuilder().build())
    with pytest.raises(errors.InvalidArgument, match="3 layers"):
        snaps.prepare("ctr", "c")


def test_unmount_of_nothing_is_fine(target: Path) -> None:
    assert unmount(target) is False
    assert unmount(target / "missing") is False


def test_failed_mount_is_reported(target: Path) -> None:
    bad = Mount(type="overlay", source="overlay", options=("lowerdir=/nonexistent-berth",))
    with pytest.raises(errors.Error, match="mount overlay"):
        mount_all([bad], target)


def test_reading_layers_without_mounting_agrees_with_overlayfs(
    snaps: OverlaySnapshotter, target: Path
) -> None:
    three_layers(snaps)
    add_layer(
        snaps,
        "l4",
        "l3",
        LayerBuilder()
        .symlink("etc/rel", "keep")
        .symlink("etc/up", "../etc/conf.d/upper")
        .symlink("dir", "etc/conf.d")
        .whiteout("home/user")
        .build(),
    )
    mount_all(snaps.view("v", "l4"), target)
    paths = [
        "etc/keep", "etc/gone", "etc/conf.d/lower", "etc/conf.d/upper", "etc/rel", "etc/up",
        "dir/upper", "dir/lower", "home/user/file", "bin/sh", "nope",
    ]  # fmt: skip
    seen = {}
    for path in paths:
        via_mount = (target / path).read_bytes() if (target / path).is_file() else None
        assert layerview.read_file(snaps.layer_dirs("l4"), path, 1 << 20) == via_mount, path
        seen[path] = via_mount
    hidden = {"etc/gone", "etc/conf.d/lower", "dir/lower", "home/user/file", "nope"}
    assert {p for p, data in seen.items() if data is None} == hidden
