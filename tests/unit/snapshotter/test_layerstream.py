"""LayerStream (the unpacker's read-ahead tar stream) and the unpack paths that use it:
forward-only seeks, file data written straight from the chunks, bounds, errors, sparse files."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.layerstream import LayerStream
from snapshotter.streams import CHUNK
from snapshotter.testing import LayerBuilder, compress
from snapshotter.unpack import apply_layer

DATA = os.urandom(3 * CHUNK + 12345)
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


class Failing(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._left = io.BytesIO(data)

    def read(self, n: int = -1, /) -> bytes:
        data = self._left.read(n)
        if not data:
            raise OSError("the disk went away")
        return data


def stream(data: bytes = DATA, limit: int = 1 << 40) -> LayerStream:
    return LayerStream(io.BytesIO(data), limit=limit, what="layer sha256:abc")


def test_reads_seeks_and_copies_give_back_the_stream(tmp_path: Path) -> None:
    s = stream()
    try:
        assert s.read(10) == DATA[:10]
        assert s.tell() == 10
        assert s.seek(CHUNK - 5) == CHUNK - 5
        assert s.read(10) == DATA[CHUNK - 5 : CHUNK + 5]  # across a chunk boundary
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            s.copy_to(fd, 2 * CHUNK + 7)
        finally:
            os.close(fd)
        assert (tmp_path / "f").read_bytes() == DATA[CHUNK + 5 : 3 * CHUNK + 12]
        s.drain()
        assert s.read(1) == b""
        assert s.count == len(DATA)
        assert s.digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    finally:
        s.close()


def test_a_backward_seek_is_refused_as_corruption() -> None:
    s = stream()
    try:
        s.read(100)
        with pytest.raises(errors.InvalidArgument, match="go back to offset 50"):
            s.seek(50)
    finally:
        s.close()


def test_copying_past_the_end_is_eof(tmp_path: Path) -> None:
    s = stream(DATA[:1000])
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(EOFError):
            s.copy_to(fd, 1001)
    finally:
        os.close(fd)
        s.close()


def test_more_than_the_limit_is_refused() -> None:
    s = stream(limit=CHUNK + 1)
    try:
        with pytest.raises(errors.InvalidArgument, match="more than"):
            s.drain()
    finally:
        s.close()


def test_a_read_failure_reaches_the_reader() -> None:
    s = LayerStream(Failing(DATA[:100]), limit=1 << 40, what="layer x")
    try:
        assert s.read(100) == DATA[:100]
        with pytest.raises(OSError, match="went away"):
            s.read(1)
    finally:
        s.close()


def test_close_stops_a_producer_that_is_ahead() -> None:
    s = stream(os.urandom(20 * CHUNK))  # more than the read-ahead queue holds
    s.read(1)
    s.close()


def gnu_sparse_tar(name: str, pieces: list[tuple[int, bytes]], real_size: int) -> bytes:
    """An old-GNU sparse member ('S'): data pieces stored back to back, the map in the header."""
    stored = b"".join(data for _, data in pieces)
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = len(stored)
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    pos = 386
    for offset, data in pieces:
        header[pos : pos + 12] = b"%011o\0" % offset
        header[pos + 12 : pos + 24] = b"%011o\0" % len(data)
        pos += 24
    header[483:495] = b"%011o\0" % real_size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    padded = stored + b"\0" * (-len(stored) % 512)
    return bytes(header[:512]) + padded + b"\0" * 1024


def test_a_sparse_file_is_extracted_with_its_holes(tmp_path: Path) -> None:
    tar = gnu_sparse_tar("sparse", [(0, b"A" * 512), (8192, b"B" * 512)], 10_000)
    after = LayerBuilder().file("after", b"next").build()
    stats = apply_layer(io.BytesIO(compress(tar[:-1024] + after, "gzip")), GZ, tmp_path)
    body = (tmp_path / "sparse").read_bytes()
    assert body == b"A" * 512 + b"\0" * 7680 + b"B" * 512 + b"\0" * (10_000 - 8704)
    assert (tmp_path / "after").read_bytes() == b"next"
    assert stats.entries == 2


def test_a_file_cut_short_by_the_end_of_the_stream_is_corrupt(tmp_path: Path) -> None:
    tar = LayerBuilder().file("big", os.urandom(5000)).build()
    with pytest.raises(errors.InvalidArgument, match="corrupt or truncated"):
        apply_layer(io.BytesIO(tar[:3000]), TAR, tmp_path)
