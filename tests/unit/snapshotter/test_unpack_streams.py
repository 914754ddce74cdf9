"""The readers apply_layer stacks up: gzip members and padding, read-ahead, bounds."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from snapshotter import errors
from snapshotter.streams import (
    GzipReader,
    HashingReader,
    compression_of,
    decompressed,
)
from snapshotter.testing import sha256


def read_all(reader: object, n: int = 7777) -> bytes:
    out = []
    while chunk := reader.read(n):  # type: ignore[attr-defined]
        out.append(chunk)
    return b"".join(out)


def test_gzip_reader_joins_members_and_accepts_zero_padding() -> None:
    a, b = os.urandom(3 << 20), b"second member"
    blob = gzip.compress(a) + gzip.compress(b) + bytes(1000)
    assert read_all(GzipReader(io.BytesIO(blob))) == a + b


def test_gzip_reader_refuses_garbage_after_the_stream() -> None:
    blob = gzip.compress(b"data") + b"\0\0junk"
    with pytest.raises(zlib.error):
        read_all(GzipReader(io.BytesIO(blob)))


def test_gzip_reader_refuses_a_bad_crc() -> None:
    blob = bytearray(gzip.compress(b"payload" * 100))
    blob[-8] ^= 0xFF  # the CRC32 in the trailer
    with pytest.raises(zlib.error):
        read_all(GzipReader(io.BytesIO(bytes(blob))))


def test_gzip_reader_refuses_a_truncated_member() -> None:
    blob = gzip.compress(os.urandom(100_000))
    with pytest.raises(EOFError):
        read_all(GzipReader(io.BytesIO(blob[:-20])))


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", "gzip"),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"),
        ("application/vnd.oci.image.layer.v1.tar+zstd", "zstd"),
        ("application/vnd.oci.image.layer.v1.tar", ""),
        ("application/vnd.docker.image.rootfs.diff.tar", ""),
        ("", None),
        ("application/octet-stream", None),
    ],
)
def test_compression_from_media_type(media_type: str, expected: str | None) -> None:
    assert compression_of(media_type) == expected


def test_unknown_media_type_is_sniffed() -> None:
    data = os.urandom(10_000)
    assert read_all(decompressed(io.BytesIO(gzip.compress(data)), "")) == data
    assert read_all(decompressed(io.BytesIO(data), "application/octet-stream")) == data


def test_hashing_reader_hashes_everything_and_bounds_it() -> None:
    data = os.urandom(100_000)
    r = HashingReader(io.BytesIO(data), limit=100_000, what="layer x")
    r.read(10)
    r.drain()
    assert (r.count, r.digest) == (100_000, sha256(data))
    with pytest.raises(errors.InvalidArgument, match="layer x: more than 99999 bytes"):
        HashingReader(io.BytesIO(data), limit=99_999, what="layer x").drain()
