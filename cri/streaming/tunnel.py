"""SPDY tunnelled through a WebSocket: port-forward as current client-go does it over WebSocket.

The client asks for the subprotocol ``SPDY/3.1+portforward.k8s.io``; once the upgrade is
accepted, every binary WebSocket message carries the next bytes of an ordinary SPDY/3.1
connection, in both directions, and the server side of it is our `SpdySession` unchanged.
The port-forward streams (and their ``port`` headers) then travel inside SPDY, so the URL
has no ``ports`` query.

`Tunnel` turns an accepted `WsConnection` into the reader and writer a `SpdySession` needs:
`pump()` feeds each received message into the reader; each `drain()` of the writer sends what
was written since as one message (the session writes one frame, then drains).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from cri.streaming.websocket import WsConnection

PREFIX: Final = "SPDY/3.1+"


def tunnelled(offered: list[str], protocols: list[str]) -> str | None:
    """The first offered tunnelling subprotocol whose inner protocol we serve, if any."""
    for name in offered:
        if name.startswith(PREFIX) and name.removeprefix(PREFIX) in protocols:
            return name
    return None


class Tunnel:
    """The byte stream inside a WebSocket: `reader` (fed by `pump()`) and `writer`."""

    def __init__(self, conn: WsConnection) -> None:
        self.conn = conn
        self.reader = asyncio.StreamReader()
        self.writer = TunnelWriter(conn.send, conn.abort, conn.is_open)

    async def pump(self) -> None:
        """Feed received messages to the reader until the WebSocket ends (then EOF).

        A text message is not part of the protocol: the connection is dropped.
        """
        try:
            while (message := await self.conn.receive()) is not None:
                if isinstance(message, str):
                    self.conn.abort()
                    return
                self.reader.feed_data(message)
        finally:
            self.reader.feed_eof()


class TunnelWriter:
    """A SPDY session's writer (`spdy_session.ByteWriter`) over a WebSocket: each `drain()`
    sends what was written since as one binary message through `send`."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        abort: Callable[[], None],
        is_open: Callable[[], bool],
    ) -> None:
        self._send = send
        self._abort = abort
        self._is_open = is_open
        self._pending: list[bytes] = []

    @property
    def transport(self) -> TunnelWriter:  # the session aborts through `transport.abort()`
        return self

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))

    async def drain(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._send(data)

    def is_closing(self) -> bool:
        return not self._is_open()

    def can_write_eof(self) -> bool:
        return False  # half-close does not exist in a WebSocket; GOAWAY says it

    def write_eof(self) -> None:
        raise NotImplementedError("a WebSocket cannot half-close")

    def close(self) -> None:
        self._abort()

    def abort(self) -> None:
        self._abort()
