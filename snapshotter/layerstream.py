"""A layer's uncompressed tar as the unpacker reads it: produced ahead in a thread, hashed,
bounded, and handed over in large chunks that file data is written from without copying.

    blob ─read─► inflate ─► sha256 (diff_id), size bound ─► queue ─► tarfile headers (read)
         (thread "berth-unpack-read", all outside the GIL)      └──► file data: os.write
                                                                     straight from the chunk

tarfile's stream mode (`r|`) would re-buffer every byte several times through 10 KiB
reads and slices; here tarfile parses headers through `read`/`tell` and the forward-only
`seek` its non-stream mode uses to skip data, while regular files' bytes go from the
decompressed chunk to the file (`copy_to`). A backward seek is refused as corruption.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from typing import Final

from snapshotter import errors
from snapshotter.streams import CHUNK, GzipReader, Readable, compression_of, decompressed

_DEPTH: Final = 4  # chunks read ahead: at most ~4 MiB waiting per layer


def tar_reader(stream: Readable, media_type: str) -> Readable:
    """Reads of at most CHUNK uncompressed bytes; gzip without a buffering layer between."""
    if compression_of(media_type) == "gzip":
        return GzipReader(stream)
    return decompressed(stream, media_type)


class LayerStream:
    """The uncompressed tar of a layer, read ahead by a thread; always `close()`.

    `digest` and `count` cover every byte produced, so `drain()` before reading them. More
    than `limit` bytes raise InvalidArgument (naming `what`); a failure in the thread is
    raised by the read that reaches it.
    """

    def __init__(self, src: Readable, *, limit: int, what: str) -> None:
        self._src = src
        self._limit = limit
        self._what = what
        self._hash = hashlib.sha256()
        self.count = 0
        self._pos = 0  # bytes handed to the reader
        self._chunk = memoryview(b"")
        self._at = 0  # position within _chunk
        self._eof = False
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="berth-unpack-read")
        self._thread.start()

    # --- the producer thread --------------------------------------------------

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._src.read(CHUNK)
                self.count += len(chunk)
                if self.count > self._limit:
                    raise errors.InvalidArgument(f"{self._what}: more than {self._limit} bytes")
                self._hash.update(chunk)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # --- the reader -------------------------------------------------------------

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at the end of the stream."""
        while self._at >= len(self._chunk):
            if self._eof:
                return False
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                self._chunk, self._at = memoryview(b""), 0
                raise item
            self._chunk, self._at = memoryview(item), 0
            self._eof = not item
        return True

    def _take(self, n: int) -> memoryview:
        """Up to `n` bytes of the current chunk (empty at the end), without copying."""
        if not self._fill():
            return memoryview(b"")
        piece = self._chunk[self._at : self._at + n]
        self._at += len(piece)
        self._pos += len(piece)
        return piece

    def read(self, n: int = -1, /) -> bytes:
        """Exactly `n` bytes unless the stream ends first (tar headers; small)."""
        if n is None or n < 0:
            raise io.UnsupportedOperation("a layer stream is read in bounded pieces")
        first = self._take(n)
        if len(first) == n or not first:
            return bytes(first)
        parts = [bytes(first)]
        got = len(first)
        while got < n and (piece := self._take(n - got)):
            parts.append(bytes(piece))
            got += len(piece)
        return b"".join(parts)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        """Skip forward to `pos`; a backward seek means a corrupt archive."""
        if whence != io.SEEK_SET or pos < self._pos:
            raise errors.InvalidArgument(
                f"{self._what}: tar stream would need to go back to offset {pos}"
            )
        while self._pos < pos and self._take(pos - self._pos):
            pass
        return self._pos

    def copy_to(self, fd: int, size: int) -> None:
        """Write the next `size` bytes to `fd`; EOFError if the stream ends first."""
        left = size
        while left:
            piece = self._take(min(left, CHUNK))
            if not piece:
                raise EOFError(f"tar stream ends {left} bytes into a file's data")
            left -= len(piece)
            while piece:
                piece = piece[os.write(fd, piece) :]

    def drain(self) -> None:
        """Consume the rest (end-of-archive blocks, padding) so the digest covers it."""
        while self._take(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
