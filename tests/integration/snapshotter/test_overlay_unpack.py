"""apply_layer as root: owners, devices, fifos, file capabilities, overlay whiteouts."""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.testing import LayerBuilder
from snapshotter.unpack import OPAQUE_XATTR, apply_layer

pytestmark = pytest.mark.root

# struct vfs_cap_data, revision 2, effective bit set, permitted = CAP_NET_RAW (13)
NET_RAW_CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def apply(tar: bytes, dest: Path) -> None:
    apply_layer(io.BytesIO(tar), "", dest, layer="sha256:test")


def test_owners_modes_and_special_files(tmp_path: Path) -> None:
    tar = (
        LayerBuilder()
        .dir("d", mode=0o750, uid=10, gid=20)
        .file("d/suid", b"x", mode=0o6755, uid=1000, gid=1000)
        .symlink("d/link", "suid", uid=33, gid=33)
        .device("dev/null", 1, 3, uid=0, gid=0)
        .device("dev/loop9", 7, 9, block=True)
        .fifo("run/pipe", mode=0o620, uid=5, gid=6)
        .file("ping", b"elf", mode=0o755, xattrs={"security.capability": NET_RAW_CAP})
        .build()
    )
    apply(tar, tmp_path)
    d = (tmp_path / "d").stat()
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (10, 20, 0o750)
    s = (tmp_path / "d/suid").stat()
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (1000, 1000, 0o6755)
    link = (tmp_path / "d/link").lstat()
    assert (link.st_uid, link.st_gid) == (33, 33)
    null = (tmp_path / "dev/null").lstat()
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (tmp_path / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.minor(loop.st_rdev) == 9
    pipe = (tmp_path / "run/pipe").lstat()
    assert stat.S_ISFIFO(pipe.st_mode) and (pipe.st_uid, stat.S_IMODE(pipe.st_mode)) == (5, 0o620)
    assert os.getxattr(tmp_path / "ping", "security.capability") == NET_RAW_CAP


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    tar = (
        LayerBuilder()
        .whiteout("etc/gone")
        .file("etc/gone", b"re-added in the same layer is replaced by the later whiteout")
        .whiteout("etc/gone")
        .opaque("var/cache")
        .file("var/cache/new", b"n")
        .file(".wh..wh.plnk/123.456", b"")  # AUFS hardlink bookkeeping: ignored
        .build()
    )
    apply(tar, tmp_path)
    gone = (tmp_path / "etc/gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(tmp_path / "var/cache", OPAQUE_XATTR) == b"y"
    assert (tmp_path / "var/cache/new").read_bytes() == b"n"
    assert not (tmp_path / ".wh..wh.plnk").exists()
    assert not any(p.name.startswith(".wh.") for p in tmp_path.rglob("*") if p.is_file())


def test_an_opaque_dir_keeps_its_own_attributes(tmp_path: Path) -> None:
    tar = LayerBuilder().opaque("srv").dir("srv", mode=0o711, uid=7, gid=8).build()
    apply(tar, tmp_path)
    srv = (tmp_path / "srv").stat()
    assert (srv.st_uid, stat.S_IMODE(srv.st_mode)) == (7, 0o711)
    assert os.getxattr(tmp_path / "srv", OPAQUE_XATTR) == b"y"


def test_a_layer_cannot_forge_overlay_xattrs(tmp_path: Path) -> None:
    tar = LayerBuilder().dir("d", xattrs={"trusted.overlay.redirect": b"/etc"}).build()
    apply(tar, tmp_path)
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "d")


def test_device_nodes_cannot_be_used_to_escape(tmp_path: Path) -> None:
    # A device node at a path a later entry treats as a directory is refused, not opened.
    tar = LayerBuilder().device("dev", 1, 3).file("dev/x", b"x").build()
    with pytest.raises(errors.InvalidArgument, match="'dev' is a symlink or not a directory"):
        apply(tar, tmp_path)
