"""Non-blocking reads and writes on raw pipe and pty descriptors in asyncio.

Raw descriptors rather than asyncio transports: the shim needs pty masters
(EIO means the other side closed), fds it hands to child processes, and
explicit control over when each end is closed.
"""

from __future__ import annotations

import asyncio
import errno
import os

CHUNK = 64 * 1024


def pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose read end is non-blocking."""
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(r, False)
    return r, w


async def read_some(fd: int, size: int = CHUNK) -> bytes:
    """Read what is there (waiting until something is); b"" at end of stream."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            pass
        except OSError as e:
            # A pty master reads EIO once every slave descriptor is closed.
            if e.errno == errno.EIO:
                return b""
            raise
        await wait_readable(fd)


async def wait_readable(fd: int) -> None:
    """Wait until `fd` is readable (or at end of stream)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, _set_done, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def read_all(fd: int, limit: int | None = None) -> tuple[bytes, int]:
    """Read to end of stream; keep at most `limit` bytes, return (kept, total read)."""
    kept = bytearray()
    total = 0
    while chunk := await read_some(fd):
        total += len(chunk)
        room = len(chunk) if limit is None else max(0, limit - len(kept))
        kept += chunk[:room]
    return bytes(kept), total


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FdWriter:
    """Buffered non-blocking writes to a pipe or pty; owns (and closes) the fd.

    Writes are queued and flushed when the fd is writable. `drain()` waits
    until the queue is below `high_water`, which gives the caller
    backpressure. A broken pipe drops the data: the reader went away.
    """

    def __init__(self, fd: int, high_water: int = 1 << 20) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self._buf = bytearray()
        self._high = high_water
        self._loop = asyncio.get_running_loop()
        self._waiting = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._close_when_empty = False

    def write(self, data: bytes) -> None:
        if self.fd is None or self._close_when_empty:
            return
        self._buf += data
        self._flush()

    async def drain(self) -> None:
        while len(self._buf) > self._high and self.fd is not None:
            self._drained.clear()
            await self._drained.wait()

    def close(self) -> None:
        """Close once everything queued has been written (or the fd broke)."""
        self._close_when_empty = True
        if not self._buf:
            self.abort()

    def abort(self) -> None:
        """Close now, dropping anything queued."""
        if self._waiting and self.fd is not None:
            self._loop.remove_writer(self.fd)
        self._waiting = False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._buf.clear()
        self._drained.set()

    def _flush(self) -> None:
        assert self.fd is not None
        try:
            while self._buf:
                del self._buf[: os.write(self.fd, self._buf)]
        except BlockingIOError:
            pass
        except OSError:
            self.abort()
            return
        self._after_flush()

    def _after_flush(self) -> None:
        if len(self._buf) <= self._high:
            self._drained.set()
        if self._buf and not self._waiting and self.fd is not None:
            self._loop.add_writer(self.fd, self._on_writable)
            self._waiting = True
        elif not self._buf:
            if self._waiting and self.fd is not None:
                self._loop.remove_writer(self.fd)
                self._waiting = False
            if self._close_when_empty:
                self.abort()

    def _on_writable(self) -> None:
        if self.fd is not None:
            self._flush()
