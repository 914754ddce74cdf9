"""Attach: a client connection joins the container's stdio.

The keeper owns the container's output. For each attachment it forks a
stream worker and feeds it through a pipe (`Feed`): stream frames of the
output from the moment the attachment was registered (nothing is replayed;
the log has the past), then one exit frame once the output is drained. A
feed the worker does not keep up with (the pipe is full) is dropped: the
worker then closes the client's connection, so a slow attacher never slows
the container.

The worker (`serve_feed`) writes the client's stdin straight to the
container's (it inherited the descriptor) and resizes the tty. When an
attachment that had stdin detaches (stdin-close frame or disconnect) it
writes one byte on `back`: with `stdin_once` the keeper then closes the
container's stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from dataclasses import dataclass

from shim import api, fdio, protocol, stdio, streams

FEED_PIPE_SIZE = 1 << 20
_HEADER = 5


@dataclass(frozen=True, slots=True)
class Ends:
    """An attach worker's descriptors: the feed's read end, the one-byte `back` pipe's
    write end, the container's stdin (None unless this attachment may write it) and the
    pty master (None without a tty)."""

    feed: int
    back: int
    stdin: int | None
    master: int | None

    def descriptors(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.feed, self.back, self.stdin, self.master) if fd is not None)


class Feed:
    """The keeper's end of one attachment's feed pipe."""

    def __init__(self, fd: int, params: api.AttachParams) -> None:
        self.fd: int | None = fd
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FEED_PIPE_SIZE)
        self._wanted = (params.stdout, params.stderr)

    def send(self, channel: int, data: bytes) -> None:
        if channel == api.CH_STDOUT and not self._wanted[0]:
            return
        if channel == api.CH_STDERR and not self._wanted[1]:
            return
        self._write(protocol.encode_stream(channel, data))

    def finish(self, exit_code: int) -> None:
        """The exit frame, then the end of the feed."""
        self._write(protocol.encode_stream(api.CH_EXIT, b'{"exit_code":%d}' % exit_code))
        self.close()

    def _write(self, frame: bytes) -> None:
        if self.fd is None:
            return
        try:
            written = os.write(self.fd, frame)
        except OSError:
            written = -1
        if written != len(frame):
            self.close()  # the worker fell behind or is gone: it drops its client

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


async def serve_feed(
    conn: streams.StreamConn,
    params: api.AttachParams,
    ends: Ends,
) -> None:
    """Run one attachment until the container exits or the client leaves.

    `ends.stdin` is None unless this attachment may write to the container's stdin: a
    worker must not hold the pipe open for nothing (`stdin_once`).
    """
    feed, back, stdin, master = ends.feed, ends.back, ends.stdin, ends.master
    # The worker's one copy of the stdin pipe goes with the writer; a pty master stays (resize).
    writer: fdio.FdWriter | None = None
    if stdin is not None:
        writer = fdio.FdWriter(os.dup(stdin) if stdin == master else stdin)

    async def on_stdin(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    def release() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            writer = None
            with contextlib.suppress(OSError):
                os.write(back, b"r")

    def on_resize(width: int, height: int) -> None:
        if master is not None:
            with contextlib.suppress(OSError):
                stdio.resize(master, width, height)

    os.set_blocking(feed, False)
    loop = asyncio.get_running_loop()
    reading = loop.create_task(conn.input(on_stdin, release, on_resize))
    feeding = loop.create_task(_forward(feed, conn))
    try:
        await asyncio.wait({reading, feeding}, return_when=asyncio.FIRST_COMPLETED)
        if feeding.done() and not feeding.cancelled() and feeding.exception() is None:
            code = feeding.result()
            if code is None:
                conn.abort()  # the keeper dropped this attachment
            else:
                await conn.finish(code)
    finally:
        for task in (reading, feeding):
            task.cancel()
        await asyncio.gather(reading, feeding, return_exceptions=True)
        release()
        await conn.close()


async def _forward(feed: int, conn: streams.StreamConn) -> int | None:
    """Pass the feed's output frames on; the exit code, or None if the feed just ended."""
    buf = bytearray()
    while chunk := await fdio.read_some(feed):
        buf += chunk
        while len(buf) >= _HEADER:
            channel, length = protocol.STREAM_HEADER.unpack_from(buf)
            if len(buf) < _HEADER + length:
                break
            payload = bytes(buf[_HEADER : _HEADER + length])
            del buf[: _HEADER + length]
            if channel == api.CH_EXIT:
                return int(json.loads(payload)["exit_code"])
            conn.send(channel, payload)
    return None
