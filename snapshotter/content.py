"""Content-addressed blob store with verified, resumable ingests.

Layout under `root`::

    blobs/sha256/<hex>      committed blobs, immutable, named by their digest
    ingest/<hex>/data       a partial download of blob sha256:<hex>
    ingest/<hex>/ref        "<digest> <expected size>" — what the partial is meant to become

A blob appears in `blobs/` only by an atomic rename after its size and digest
were verified and its data fsynced, so a crash leaves either the whole blob or
none of it. A partial survives a crash and is continued by the next ingest of
the same digest. Each ingest holds an exclusive flock on its data file: two
writers of one blob (in this process or another) cannot interleave.

All methods block (file I/O, fsync); async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from snapshotter import errors
from snapshotter.descriptors import sha256_digest, validate_digest

_READ_CHUNK: Final = 1 << 20
DEFAULT_MAX_READ: Final = 4 << 20


def _hex(digest: str) -> str:
    return validate_digest(digest).removeprefix("sha256:")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ingest:
    """One blob being written: append with `write`, then `commit` or `close` (keeps the partial).

    `offset` starts at the size of a partial left by an earlier attempt; its
    bytes are already hashed, so a resumed download continues from there.
    """

    def __init__(self, store: ContentStore, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self._store = store
        self._dir = store.root / "ingest" / _hex(digest)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self._dir / "data", "a+b")  # noqa: SIM115 - closed by close()
        try:
            self._lock_and_load()
        except BaseException:
            self._file.close()
            raise

    def _lock_and_load(self) -> None:
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errors.FailedPrecondition(
                f"blob {self.digest} is being written by another ingest"
            ) from None
        _write_atomic(self._dir / "ref", f"{self.digest} {self.size}\n".encode())
        self._hash = hashlib.sha256()
        self.offset = 0
        self._file.seek(0)
        while chunk := self._file.read(_READ_CHUNK):
            self._hash.update(chunk)
            self.offset += len(chunk)
        if self.offset > self.size:
            self.truncate()

    def write(self, data: bytes | bytearray) -> None:
        """Append `data`; past the declared size, empty the partial and raise InvalidArgument."""
        self.writev((data,))

    def writev(self, chunks: Sequence[bytes | bytearray]) -> None:
        """Append several chunks; same checks as `write`.

        Network chunks are small (~32 KiB): they are joined first, so the hash and the write
        each run once, outside the GIL, instead of hundreds of times, each of which would
        have to win the GIL back from the event loop.
        """
        total = sum(len(c) for c in chunks)
        if self.offset + total > self.size:
            self.truncate()
            raise errors.InvalidArgument(
                f"blob {self.digest}: more data than its declared size {self.size}"
            )
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._file.write(data)
        self._hash.update(data)
        self.offset += total

    def truncate(self) -> None:
        """Start over from byte 0 (the server ignored our Range request, or sent bad data)."""
        self._file.seek(0)
        self._file.truncate(0)
        self._hash = hashlib.sha256()
        self.offset = 0

    def verify(self) -> None:
        """Check that exactly the right bytes are held; if not, empty the partial and raise
        InvalidArgument (a caller may then fetch the blob again, perhaps from another host)."""
        problem = ""
        if self.offset != self.size:
            problem = f"got {self.offset} bytes, expected {self.size}"
        elif (actual := "sha256:" + self._hash.hexdigest()) != self.digest:
            problem = f"content has digest {actual}"
        if problem:
            self.truncate()
            raise errors.InvalidArgument(f"blob {self.digest}: {problem}")

    def commit(self) -> None:
        """Verify size and digest, fsync, and move the blob into place atomically.

        On a mismatch the partial is deleted and InvalidArgument raised. If the
        blob was committed meanwhile by someone else, this copy replaces it (same bytes).
        """
        try:
            self.verify()
        except errors.InvalidArgument:
            self.abort()
            raise
        self._file.flush()
        os.fsync(self._file.fileno())
        target = self._store.path(self.digest)
        os.rename(self._dir / "data", target)
        fsync_dir(target.parent)
        self._store._verified[self.digest] = _identity(os.fstat(self._file.fileno()))
        self._remove()

    def close(self) -> None:
        """Release the ingest, keeping the partial data for a later resume. Idempotent."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def abort(self) -> None:
        """Release the ingest and delete its partial data. Idempotent."""
        self._remove()

    def _remove(self) -> None:
        self.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ContentStore:
    """Blobs by sha256 digest under `root` (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "ingest").mkdir(parents=True, exist_ok=True)
        # Blobs this store committed itself, hashed on the way in: digest -> file identity.
        self._verified: dict[str, tuple[int, ...]] = {}

    def path(self, digest: str) -> Path:
        """Where the blob lives (whether or not it exists); InvalidArgument for a bad digest."""
        return self.root / "blobs" / "sha256" / _hex(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise errors.NotFound(f"blob {digest} not found in the content store") from None

    def read(self, digest: str, max_size: int = DEFAULT_MAX_READ) -> bytes:
        """The whole blob, re-verified; InvalidArgument if it is bigger than `max_size`."""
        try:
            with open(self.path(digest), "rb") as f:
                data = f.read(max_size + 1)
        except FileNotFoundError:
            raise errors.NotFound(f"blob {digest} not found in the content store") from None
        if len(data) > max_size:
            raise errors.InvalidArgument(f"blob {digest} is larger than {max_size} bytes")
        if sha256_digest(data) != digest:
            raise errors.InvalidArgument(f"blob {digest} is corrupt in the content store")
        return data

    def open_blob(self, digest: str) -> tuple[BinaryIO, bool]:
        """The blob opened for reading, and whether it is still the very file this store
        verified when it committed it (same inode, size and mtime): a reader may then skip
        hashing it again. NotFound if absent."""
        try:
            f = open(self.path(digest), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise errors.NotFound(f"blob {digest} not found in the content store") from None
        known = self._verified.get(digest)
        return f, known is not None and known == _identity(os.fstat(f.fileno()))

    def delete(self, digest: str) -> None:
        """Remove the blob; a missing blob is fine (idempotent)."""
        self._verified.pop(digest, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def digests(self) -> list[str]:
        names = os.listdir(self.root / "blobs" / "sha256")
        return sorted(f"sha256:{n}" for n in names if len(n) == 64)

    def ingest(self, digest: str, size: int) -> Ingest:
        """Open (or resume) the ingest of blob `digest`, which must be exactly `size` bytes.

        Raises FailedPrecondition while another ingest of that blob is open.
        """
        if size < 0:
            raise errors.InvalidArgument(f"blob {digest}: negative size {size}")
        return Ingest(self, validate_digest(digest), size)

    def ingests(self) -> list[str]:
        """Digests of the partial ingests present (open or left by a crash)."""
        names = os.listdir(self.root / "ingest")
        return sorted(f"sha256:{n}" for n in names if len(n) == 64)

    def age(self, digest: str, *, partial: bool = False) -> float:
        """Seconds since the blob (or its partial ingest) was last written; NotFound if absent."""
        path = self.root / "ingest" / _hex(digest) / "data" if partial else self.path(digest)
        try:
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            raise errors.NotFound(f"blob {digest} not found") from None

    def remove_partial_writes(self) -> list[str]:
        """Delete `.tmp-*` files a crash left in blobs/ or ingest/ mid-write (at start-up)."""
        stray = [
            p
            for d in (self.root / "blobs" / "sha256", self.root / "ingest")
            if d.is_dir()
            for p in d.glob(".tmp-*")
        ]
        for p in stray:
            p.unlink(missing_ok=True)
        return [p.name for p in stray]

    def abort(self, digest: str) -> None:
        """Delete the partial ingest of `digest`, if any (idempotent)."""
        shutil.rmtree(self.root / "ingest" / _hex(digest), ignore_errors=True)

    def write_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` in one go, verified against `digest` if given; returns its digest."""
        actual = sha256_digest(data)
        if digest is not None and validate_digest(digest) != actual:
            raise errors.InvalidArgument(f"blob {digest}: content has digest {actual}")
        target = self.path(actual)
        if target.is_file():
            return actual
        _write_atomic(target, data, tmp_dir=self.root / "ingest")
        return actual


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _write_atomic(target: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
