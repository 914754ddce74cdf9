"""apply_layer without privileges: content, metadata the caller owns, codecs, hostile tars.

Ownership, device nodes, whiteouts and opaque dirs need root and are covered in
tests/integration/snapshotter/test_overlay_unpack.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.streams import VerifyingReader
from snapshotter.testing import LayerBuilder, compress, sha256
from snapshotter.unpack import LayerStats, UnpackLimits, apply_layer

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "root" / "layer"
    d.mkdir(parents=True)
    return d


def apply(tar: bytes, dest: Path, kind: str = "gzip", media: str = GZ, **kw: object) -> LayerStats:
    return apply_layer(io.BytesIO(compress(tar, kind)), media, dest, layer="sha256:abc", **kw)  # type: ignore[arg-type]


def tree(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """path -> (mode, content or link target) for everything under root."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body: bytes | str = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            else:
                body = ""
            out[str(p.relative_to(root))] = (st.st_mode, body)
    return out


def simple_layer() -> bytes:
    return (
        LayerBuilder()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("bin")
        .file("bin/busybox", b"\x7fELF...", mode=0o755)
        .hardlink("bin/sh", "bin/busybox")
        .symlink("bin/ls", "busybox")
        .symlink("etc/mtab", "/proc/mounts")
        .build()
    )


@pytest.mark.parametrize(
    ("kind", "media"),
    [("gzip", GZ), ("zstd", ZST), ("", TAR), ("gzip", DOCKER_GZ), ("gzip", ""), ("zstd", "")],
)
def test_every_codec_gives_the_same_tree_and_the_tar_digest(
    dest: Path, kind: str, media: str
) -> None:
    tar = simple_layer()
    stats = apply(tar, dest, kind, media)
    assert stats.diff_id == sha256(tar)
    assert stats.size == len(tar)
    assert stats.entries == 7
    files = tree(dest)
    assert files["etc/passwd"][1] == b"root:x:0:0::/root:/bin/sh\n"
    assert files["bin/ls"][1] == "busybox"
    assert files["etc/mtab"][1] == "/proc/mounts"
    assert stat.S_IMODE(files["bin/busybox"][0]) == 0o755


def test_hardlinks_share_the_inode(dest: Path) -> None:
    apply(simple_layer(), dest)
    assert (dest / "bin/sh").stat().st_ino == (dest / "bin/busybox").stat().st_ino
    assert (dest / "bin/sh").stat().st_nlink == 2


def test_modes_and_mtimes_are_kept(dest: Path) -> None:
    tar = (
        LayerBuilder(mtime=1_234_567_890)
        .dir("tmp", mode=0o1777)
        .dir("ro", mode=0o555)
        .file("ro/inside", b"x", mode=0o4755)
        .file("g", b"", mode=0o2750)
        .file("plain", b"", mode=0o600, mtime=1_000_000_000)
        .symlink("link", "plain", mtime=1_100_000_000)
        .build()
    )
    apply(tar, dest)
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555  # set after its child was made
    assert stat.S_IMODE((dest / "ro/inside").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "g").stat().st_mode) & 0o777 == 0o750
    assert (dest / "plain").stat().st_mtime == 1_000_000_000
    assert (dest / "link").lstat().st_mtime == 1_100_000_000
    assert (dest / "ro").stat().st_mtime == 1_234_567_890  # not bumped by creating ro/inside


def test_missing_parents_are_created(dest: Path) -> None:
    apply(LayerBuilder().file("usr/share/doc/x", b"1").build(), dest)
    assert (dest / "usr/share/doc/x").read_bytes() == b"1"
    assert stat.S_IMODE((dest / "usr/share").stat().st_mode) == 0o755


def test_later_entries_replace_earlier_ones(dest: Path) -> None:
    tar = (
        LayerBuilder()
        .file("a", b"first")
        .file("a", b"second")
        .dir("d")
        .file("d/x", b"x")
        .file("d", b"now a file")
        .symlink("s", "a")
        .dir("s")
        .file("s/y", b"y")
        .build()
    )
    apply(tar, dest)
    assert (dest / "a").read_bytes() == b"second"
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "s").is_dir() and not (dest / "s").is_symlink()
    assert (dest / "s/y").read_bytes() == b"y"


def test_user_xattrs_are_kept_and_trusted_ones_dropped(dest: Path) -> None:
    tar = (
        LayerBuilder()
        .file("f", b"", xattrs={"user.k": b"v\x00\xff", "trusted.overlay.opaque": b"y"})
        .build()
    )
    try:
        apply(tar, dest)
    except errors.InvalidArgument as exc:  # pragma: no cover - filesystem without user xattrs
        pytest.skip(str(exc))
    assert os.getxattr(dest / "f", "user.k") == b"v\x00\xff"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "f")


def test_expected_diff_id_is_checked(dest: Path) -> None:
    tar = simple_layer()
    apply(tar, dest, expected_diff_id=sha256(tar))
    with pytest.raises(errors.InvalidArgument, match="diff_id"):
        apply(tar, dest.parent, expected_diff_id="sha256:" + "0" * 64)


def test_trailing_bytes_count_in_the_diff_id(dest: Path) -> None:
    tar = simple_layer() + b"\0" * 4096
    assert apply(tar, dest).diff_id == sha256(tar)


# --- hostile tars ---------------------------------------------------------------------

HOSTILE = {
    "dotdot": LayerBuilder().file("../escape", b"out"),
    "nested_dotdot": LayerBuilder().dir("a").file("a/../../escape", b"out"),
    "absolute": LayerBuilder().file("/escape", b"out"),
    "symlink_parent": LayerBuilder().symlink("link", "..").file("link/escape", b"out"),
    "symlink_abs_parent": LayerBuilder().symlink("link", "/tmp").file("link/escape", b"out"),
    "symlink_deep": LayerBuilder().dir("d").symlink("d/up", "../..").file("d/up/x/escape", b"o"),
    "hardlink_outside": LayerBuilder().hardlink("passwd", "/etc/passwd"),
    "hardlink_dotdot": LayerBuilder().hardlink("passwd", "../../etc/passwd"),
    "hardlink_not_yet": LayerBuilder().hardlink("a", "b").file("b", b"later"),
    "hardlink_via_symlink": LayerBuilder().symlink("s", "/etc").hardlink("p", "s/passwd"),
    "whiteout_dotdot": LayerBuilder().file("d/.wh...", b""),
    "root_as_file": LayerBuilder().file("./", b"x"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_entries_are_refused_and_nothing_escapes(
    tmp_path: Path, dest: Path, name: str
) -> None:
    before = sorted(p for p in tmp_path.rglob("*") if dest not in (p, *p.parents))
    with pytest.raises(errors.InvalidArgument, match=r"layer sha256:abc: entry '"):
        apply(HOSTILE[name].build(), dest)
    after = sorted(p for p in tmp_path.rglob("*") if dest not in (p, *p.parents))
    assert after == before
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "root" / "escape").exists()


def test_a_symlink_entry_itself_may_point_anywhere(dest: Path) -> None:
    # The target is only ever resolved inside the container's root, never by the unpacker.
    apply(LayerBuilder().symlink("etc", "/etc").symlink("up", "../../..").build(), dest)
    assert os.readlink(dest / "etc") == "/etc"


def test_entry_count_is_bounded(dest: Path) -> None:
    b = LayerBuilder()
    for i in range(20):
        b.file(f"f{i}")
    with pytest.raises(errors.InvalidArgument, match="more than 10 entries"):
        apply(b.build(), dest, limits=UnpackLimits(max_entries=10))


def test_decompression_bomb_is_bounded(dest: Path) -> None:
    tar = LayerBuilder().file("zeros", bytes(8 << 20)).build()
    blob = compress(tar, "gzip")
    assert len(blob) < 64 << 10
    with pytest.raises(errors.InvalidArgument, match=r"more than|larger than"):
        apply(tar, dest, limits=UnpackLimits(max_bytes=1 << 20))


def test_padding_bomb_after_the_archive_is_bounded(dest: Path) -> None:
    tar = LayerBuilder().file("a", b"x").build() + bytes(4 << 20)
    with pytest.raises(errors.InvalidArgument, match="more than 1048576 bytes"):
        apply(tar, dest, limits=UnpackLimits(max_bytes=1 << 20))


def test_huge_pax_header_is_refused_before_it_is_read(dest: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(errors.InvalidArgument, match="metadata header"):
        apply(buf.getvalue(), dest)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_truncated_stream_is_refused(dest: Path, kind: str) -> None:
    blob = compress(simple_layer() + os.urandom(50_000), kind)
    with pytest.raises(errors.InvalidArgument, match="sha256:abc"):
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), f"x+{kind}", dest, layer="sha256:abc")


def test_garbage_is_refused(dest: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="sha256:abc"):
        apply_layer(io.BytesIO(b"\x1f\x8bnot gzip at all" * 100), GZ, dest, layer="sha256:abc")


def test_verifying_reader_checks_digest_and_size() -> None:
    data = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    ok = VerifyingReader(io.BytesIO(data), digest=digest, size=1000)
    ok.read(10)
    ok.verify()
    with pytest.raises(errors.InvalidArgument, match="content has digest"):
        VerifyingReader(io.BytesIO(data[::-1]), digest=digest, size=1000).verify()
    with pytest.raises(errors.InvalidArgument, match="999 bytes"):
        VerifyingReader(io.BytesIO(data[:999]), digest=digest, size=1000).verify()
    with pytest.raises(errors.InvalidArgument, match="more than 1000 bytes"):
        VerifyingReader(io.BytesIO(data + b"x"), digest=digest, size=1000).verify()
