"""Minimal streaming clients (SPDY and WebSocket), speaking like client-go does.

For tests and tools that must drive exec/attach/port-forward URLs the way kubelet,
kubectl and crictl do, without those binaries. The SPDY client by default neither
sends nor honours WINDOW_UPDATE, exactly like moby/spdystream; pass
`window_updates=True` to act as a flow-control-aware SPDY/3.1 peer instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
import wsproto
import wsproto.events as wsev

from cri.streaming import portforward, spdy, tunnel
from cri.streaming.remotecommand import SPDY_PROTOCOLS
from cri.streaming.spdy_session import ByteWriter
from cri.streaming.websocket import (
    EXEC_PROTOCOLS,
    PORT_FORWARD_PROTOCOLS,
    decode_message,
    encode_message,
)


class UpgradeFailed(Exception):
    """The server answered the upgrade request with an ordinary HTTP response."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body.decode(errors='replace').strip()}")
        self.status = status
        self.headers = headers
        self.body = body


async def _upgrade(
    url: str, headers: list[tuple[str, str]]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[tuple[str, str]], bytes]:
    """POST an upgrade request; return the socket, the 101's headers and trailing bytes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    conn = h11.Connection(h11.CLIENT)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = h11.Request(method="POST", target=target, headers=[("Host", parts.netloc), *headers])
    writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return reader, writer, _decode_headers(event.headers), conn.trailing_data[0]
        elif isinstance(event, h11.Response):
            body = await _read_body(conn, reader)
            writer.close()
            raise UpgradeFailed(event.status_code, _decode_headers(event.headers), body)


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            return body


def _decode_headers(headers: Any) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


# ---------------------------------------------------------------- SPDY


class SpdyClientStream:
    """A stream this client opened."""

    def __init__(self, client: SpdyClient, stream_id: int, headers: dict[str, str]) -> None:
        self.client = client
        self.stream_id = stream_id
        self.headers = headers
        self.replied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._readable = asyncio.Event()
        self.remote_closed = False
        self.reset = False

    async def read(self) -> bytes:
        """Next chunk from the server; b"" at FIN, reset or end of connection."""
        while not self._chunks:
            if self.remote_closed or self.reset:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        await self.client.consumed(self.stream_id, len(chunk))
        return chunk

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), 32 * 1024):
            await self.client.send(
                spdy.Data(stream_id=self.stream_id, data=data[start : start + 32 * 1024])
            )

    async def close(self) -> None:
        await self.client.send(spdy.Data(stream_id=self.stream_id, fin=True))

    def feed(self, data: bytes, fin: bool) -> None:
        if data:
            self._chunks.append(data)
        self.remote_closed = self.remote_closed or fin
        self._readable.set()

    def on_reset(self) -> None:
        self.reset = True
        self._readable.set()
        if not self.replied.done():
            self.replied.set_exception(ConnectionResetError(f"stream {self.stream_id} refused"))


class SpdyClient:
    """An upgraded SPDY/3.1 client connection; use `connect()`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: ByteWriter,
        protocol: str,
        *,
        window_updates: bool,
    ) -> None:
        self.protocol = protocol
        self._reader = reader
        self._writer = writer
        self._encoder = spdy.FrameEncoder()
        self._decoder = spdy.FrameDecoder()
        self._lock = asyncio.Lock()
        self._streams: dict[int, SpdyClientStream] = {}
        self._next_id = 1
        self._window_updates = window_updates
        self._unacked: collections.Counter[int] = collections.Counter()
        self.goaway = asyncio.Event()
        self.frames_received: list[spdy.Frame] = []
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        protocols: Sequence[str] = SPDY_PROTOCOLS,
        *,
        window_updates: bool = False,
    ) -> SpdyClient:
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        reader, writer, response, trailing = await _upgrade(url, headers)
        chosen = next((v for k, v in response if k.lower() == "x-stream-protocol-version"), "")
        client = cls(reader, writer, chosen, window_updates=window_updates)
        client._task = asyncio.create_task(client._read_loop(trailing))
        return client

    @classmethod
    async def connect_tunnelled(
        cls, url: str, protocols: Sequence[str] = portforward.SPDY_PROTOCOLS
    ) -> SpdyClient:
        """SPDY inside a WebSocket (subprotocol ``SPDY/3.1+<protocol>``), as current client-go
        port-forwards over WebSocket."""
        ws = await WsClient.connect(url, [tunnel.PREFIX + p for p in protocols], raw=True)
        reader = asyncio.StreamReader()

        async def pump() -> None:
            try:
                while (message := await ws.receive_raw()) is not None:
                    reader.feed_data(message)
            finally:
                reader.feed_eof()

        chosen = ws.subprotocol.removeprefix(tunnel.PREFIX)
        transport = ws._writer.transport
        writer = tunnel.TunnelWriter(
            ws.send_raw, transport.abort, lambda: not transport.is_closing()
        )
        client = cls(reader, writer, chosen, window_updates=False)
        client._pump = asyncio.create_task(pump())
        client._task = asyncio.create_task(client._read_loop(b""))
        return client

    async def open_stream(self, headers: dict[str, str], *, fin: bool = False) -> SpdyClientStream:
        """Open a stream and wait for the server's SYN_REPLY (raises if refused)."""
        async with self._lock:
            stream = SpdyClientStream(self, self._next_id, headers)
            self._streams[stream.stream_id] = stream
            self._next_id += 2
            frame = spdy.SynStream(stream_id=stream.stream_id, headers=headers, fin=fin)
            self._writer.write(self._encoder.encode(frame))
            await self._writer.drain()
        await stream.replied
        return stream

    async def send(self, frame: spdy.Frame) -> None:
        async with self._lock:
            self._writer.write(self._encoder.encode(frame))
            await self._writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (to test how the server treats garbage)."""
        async with self._lock:
            self._writer.write(data)
            await self._writer.drain()

    async def ping(self, ping_id: int) -> None:
        """Send a PING and wait for its echo."""
        self._pongs[ping_id] = asyncio.get_running_loop().create_future()
        await self.send(spdy.Ping(ping_id=ping_id))
        await self._pongs[ping_id]

    async def consumed(self, stream_id: int, size: int) -> None:
        if not self._window_updates:
            return
        self._unacked[stream_id] += size
        self._unacked[0] += size
        for sid in (stream_id, 0):
            if self._unacked[sid] >= spdy.DEFAULT_INITIAL_WINDOW // 2:
                delta, self._unacked[sid] = self._unacked[sid], 0
                with contextlib.suppress(ConnectionError):
                    await self.send(spdy.WindowUpdate(stream_id=sid, delta=delta))

    async def wait_closed(self) -> None:
        """Wait until the server closed the connection."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        tasks = [t for t in (self._task, self._pump) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writer.transport.abort()

    async def _read_loop(self, trailing: bytes) -> None:
        try:
            self._dispatch_all(self._decoder.feed(trailing))
            while data := await self._reader.read(256 * 1024):
                self._dispatch_all(self._decoder.feed(data))
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in self._streams.values():
                stream.on_reset()

    def _dispatch_all(self, frames: list[spdy.Frame]) -> None:
        for frame in frames:
            self.frames_received.append(frame) if not isinstance(frame, spdy.Data) else None
            self._dispatch(frame)

    def _dispatch(self, frame: spdy.Frame) -> None:
        stream = self._streams.get(getattr(frame, "stream_id", 0))
        match frame:
            case spdy.SynReply() if stream and not stream.replied.done():
                stream.replied.set_result(None)
            case spdy.Data() if stream:
                stream.feed(frame.data, frame.fin)
            case spdy.RstStream() if stream:
                stream.on_reset()
            case spdy.GoAway():
                self.goaway.set()
            case spdy.Ping() if frame.ping_id in self._pongs:
                self._pongs.pop(frame.ping_id).set_result(None)


# ---------------------------------------------------------------- remote command over SPDY


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecResult:
    """What a client saw of an exec/attach session."""

    protocol: str
    stdout: bytes = b""
    stderr: bytes = b""
    error: bytes = b""  # raw error stream: metav1.Status JSON (v4+) or text

    @property
    def status(self) -> dict[str, Any] | None:
        return json.loads(self.error) if self.error.startswith(b"{") else None

    @property
    def exit_code(self) -> int | None:
        """0 on Success, the code of a NonZeroExitCode status, else None."""
        status = self.status
        if status is None or status.get("status") == "Success":
            return 0 if status is not None else None
        causes = status.get("details", {}).get("causes", [])
        codes = [int(c["message"]) for c in causes if c.get("reason") == "ExitCode"]
        return codes[0] if codes else None


@dataclass(slots=True)
class RemoteCommandStreams:
    """The streams of a SPDY exec/attach session, opened like client-go does."""

    client: SpdyClient
    error: SpdyClientStream
    stdin: SpdyClientStream | None = None
    stdout: SpdyClientStream | None = None
    stderr: SpdyClientStream | None = None
    resize: SpdyClientStream | None = None
    opened: list[str] = field(default_factory=list)

    @classmethod
    async def open(
        cls, client: SpdyClient, *, stdin: bool, stdout: bool, stderr: bool, tty: bool
    ) -> RemoteCommandStreams:
        wanted = [("error", True), ("stdin", stdin), ("stdout", stdout)]
        wanted += [
            ("stderr", stderr and not tty),
            ("resize", tty and not client.protocol.startswith("v2")),
        ]
        opened = {}
        for kind, on in wanted:
            if on:
                opened[kind] = await client.open_stream({"streamtype": kind})
        return cls(client=client, opened=list(opened), **opened)

    async def send_resize(self, width: int, height: int) -> None:
        assert self.resize is not None
        await self.resize.write(json.dumps({"Width": width, "Height": height}).encode())

    async def collect(self) -> ExecResult:
        """Read stdout, stderr and the error stream to their ends."""
        stdout, stderr, error = await asyncio.gather(
            _read_all(self.stdout), _read_all(self.stderr), self.error.read_all()
        )
        return ExecResult(protocol=self.client.protocol, stdout=stdout, stderr=stderr, error=error)


async def _read_all(stream: SpdyClientStream | None) -> bytes:
    return b"" if stream is None else await stream.read_all()


async def exec_spdy(
    url: str,
    *,
    stdin: bytes | None = None,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocols: Sequence[str] = SPDY_PROTOCOLS,
) -> ExecResult:
    """Run a whole exec/attach session: send `stdin` then EOF, collect the output."""
    client = await SpdyClient.connect(url, protocols)
    try:
        streams = await RemoteCommandStreams.open(
            client, stdin=stdin is not None, stdout=stdout, stderr=stderr, tty=tty
        )
        if streams.stdin is not None and stdin is not None:
            await streams.stdin.write(stdin)
            await streams.stdin.close()
        return await streams.collect()
    finally:
        await client.close()


# ---------------------------------------------------------------- WebSocket


class WsClient:
    """A WebSocket client for the channel protocols; use `connect()`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: wsproto.WSConnection
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = ws
        self._events: collections.deque[wsev.Event] = collections.deque()
        self.protocol = EXEC_PROTOCOLS[""]
        self.subprotocol = ""
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, url: str, subprotocols: Sequence[str], *, port_forward: bool = False, raw: bool = False
    ) -> WsClient:
        """Open the WebSocket; `raw`: messages are not channel-framed (a tunnel's bytes)."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        writer.write(
            ws.send(wsev.Request(host=parts.netloc, target=target, subprotocols=list(subprotocols)))
        )
        client = cls(reader, writer, ws)
        event = await client._next_event()
        if isinstance(event, wsev.RejectConnection):
            writer.close()
            raise UpgradeFailed(event.status_code, _decode_headers(event.headers), b"")
        if not isinstance(event, wsev.AcceptConnection):
            raise ConnectionError(f"unexpected websocket handshake event {event!r}")
        client.subprotocol = event.subprotocol or ""
        if not raw:
            table = PORT_FORWARD_PROTOCOLS if port_forward else EXEC_PROTOCOLS
            client.protocol = table[client.subprotocol]
        return client

    async def send_raw(self, data: bytes) -> None:
        """One binary message, as it is."""
        self._writer.write(self._ws.send(wsev.BytesMessage(data=data)))
        await self._writer.drain()

    async def receive_raw(self) -> bytes | None:
        """The next whole binary message, as it is; None once the server closed."""
        parts: list[bytes] = []
        while True:
            event = await self._next_event()
            if event is None or isinstance(event, wsev.CloseConnection):
                return None
            if isinstance(event, wsev.BytesMessage):
                parts.append(bytes(event.data))
                if event.message_finished:
                    return b"".join(parts)

    async def send(self, channel: int, data: bytes) -> None:
        message = encode_message(self.protocol, channel, data)
        event = (
            wsev.TextMessage(data=message)
            if isinstance(message, str)
            else wsev.BytesMessage(data=message)
        )
        self._writer.write(self._ws.send(event))
        await self._writer.drain()

    async def send_close_signal(self, channel: int) -> None:
        """v5: tell the server this client sends nothing more on `channel`."""
        self._writer.write(self._ws.send(wsev.BytesMessage(data=bytes([255, channel]))))
        await self._writer.drain()

    async def receive(self) -> tuple[int, bytes] | None:
        """The next (channel, payload); None once the server closed the connection."""
        parts: list[bytes | str] = []
        while True:
            event = await self._next_event()
            if event is None or isinstance(event, wsev.CloseConnection):
                return None
            if isinstance(event, wsev.Message):
                parts.append(event.data)
                if event.message_finished:
                    whole: bytes | str = (
                        "".join(map(str, parts))
                        if isinstance(event.data, str)
                        else b"".join(p for p in parts if isinstance(p, bytes))
                    )
                    return decode_message(self.protocol, whole)

    async def close(self) -> None:
        self._writer.transport.abort()

    async def _next_event(self) -> wsev.Event | None:
        while not self._events:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._answer(event)
                self._events.append(event)
        return self._events.popleft()

    def _answer(self, event: wsev.Event) -> None:
        if isinstance(event, wsev.Ping):
            self._writer.write(self._ws.send(event.response()))
        elif isinstance(event, wsev.CloseConnection):
            self.close_code = event.code
            with contextlib.suppress(wsproto.utilities.LocalProtocolError):
                self._writer.write(self._ws.send(event.response()))


async def exec_websocket(
    url: str,
    subprotocols: Sequence[str] = ("v5.channel.k8s.io",),
    *,
    stdin: bytes | None = None,
) -> ExecResult:
    """Run a whole exec/attach session over WebSocket; with v5, EOF stdin after sending."""
    client = await WsClient.connect(url, subprotocols)
    try:
        if stdin is not None:
            await client.send(0, stdin)
            if client.protocol.close_signal:
                await client.send_close_signal(0)
        out: dict[int, bytes] = collections.defaultdict(bytes)
        while (message := await client.receive()) is not None:
            out[message[0]] += message[1]
        return ExecResult(protocol=client.protocol.name, stdout=out[1], stderr=out[2], error=out[3])
    finally:
        await client.close()
