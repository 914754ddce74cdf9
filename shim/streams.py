"""The shim's side of a stream connection (after `exec_stream` / `attach` said OK).

Output goes out as stream frames (see shim.protocol); input frames from the
client are dispatched to callbacks: stdin data, stdin closed, window resize.
The connection ends with one exit frame from the shim. When the client goes
away first, `input()` returns and the owner cleans up (an exec'd process is
killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from shim import api, protocol

# An attached client that lets this much output pile up is dropped.
ATTACH_BUFFER_LIMIT = 4 << 20


class StreamConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.closed = False

    def send(self, channel: int, data: bytes) -> None:
        """Queue a frame without waiting; drop the connection if the client lags too far."""
        if self.closed:
            return
        if self._writer.transport.get_write_buffer_size() > ATTACH_BUFFER_LIMIT:
            self.abort()
            return
        self._writer.write(protocol.encode_stream(channel, data))

    async def send_wait(self, channel: int, data: bytes) -> None:
        """Send a frame and wait for room (backpressure to the producer)."""
        if self.closed:
            return
        self._writer.write(protocol.encode_stream(channel, data))
        try:
            await self._writer.drain()
        except ConnectionError:
            self.abort()

    async def finish(self, exit_code: int) -> None:
        """Send the exit frame and close the connection."""
        if not self.closed:
            self._writer.write(
                protocol.encode_stream(api.CH_EXIT, json.dumps({"exit_code": exit_code}).encode())
            )
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        self.closed = True
        self._writer.transport.abort()

    async def input(
        self,
        on_stdin: Callable[[bytes], Awaitable[None]],
        on_stdin_close: Callable[[], None],
        on_resize: Callable[[int, int], None],
    ) -> None:
        """Dispatch client frames until the client closes or breaks the protocol."""
        while not self.closed:
            try:
                frame = await protocol.read_stream(self._reader)
            except (protocol.ProtocolError, ConnectionError):
                return
            if frame is None:
                return
            channel, payload = frame
            if channel == api.CH_STDIN:
                await on_stdin(payload)
            elif channel == api.CH_STDIN_CLOSE:
                on_stdin_close()
            elif channel == api.CH_RESIZE:
                size = _parse_resize(payload)
                if size is not None:
                    on_resize(*size)


def _parse_resize(payload: bytes) -> tuple[int, int] | None:
    try:
        obj = json.loads(payload)
        width, height = obj["width"], obj["height"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    return None
