"""WebSocket transport: the Kubernetes channel framing, exec/attach and port-forward.

Every message starts with a channel number: one byte in the binary protocols
(`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`), or one ASCII digit
followed by base64 text in the base64 protocols (sent as text messages). Exec and
attach use channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.

`v5.channel.k8s.io` adds a CLOSE signal: the message `[255, n]` means "the sender
will send nothing more on channel n" — how a client says stdin reached EOF, which
earlier versions cannot express. (Current client-go offers only v5.)

Port-forward uses two channels per requested port, 2i data and 2i+1 error; the
first message on each channel from us carries the port as 2 bytes little-endian.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
import wsproto
import wsproto.events as ev
from wsproto.connection import ConnectionState
from wsproto.utilities import RemoteProtocolError

from cri.streaming import portforward
from cri.streaming.api import ProcessStream, StreamingBackend
from cri.streaming.idle import IdleTimer
from cri.streaming.remotecommand import Channels, Options, StatusStyle, serve

log = structlog.get_logger(__name__)

CLOSE_CHANNEL = 255
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
_QUEUE_DEPTH = 16
_LINGER = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WsProtocol:
    """A channel subprotocol: its encoding and what it can signal."""

    name: str
    base64: bool = False
    json_status: bool = False  # v4+: the error channel carries a metav1.Status
    close_signal: bool = False  # v5: [255, channel] half-closes a channel


EXEC_PROTOCOLS = {
    p.name: p
    for p in (
        WsProtocol(name=""),
        WsProtocol(name="channel.k8s.io"),
        WsProtocol(name="base64.channel.k8s.io", base64=True),
        WsProtocol(name="v4.channel.k8s.io", json_status=True),
        WsProtocol(name="v4.base64.channel.k8s.io", base64=True, json_status=True),
        WsProtocol(name="v5.channel.k8s.io", json_status=True, close_signal=True),
    )
}
PORT_FORWARD_PROTOCOLS = {
    p.name: p
    for p in (
        WsProtocol(name=""),
        WsProtocol(name="v4.channel.k8s.io"),
        WsProtocol(name="v4.base64.channel.k8s.io", base64=True),
    )
}


def choose_protocol(offered: Sequence[str], supported: dict[str, WsProtocol]) -> WsProtocol | None:
    """The first offered subprotocol we support ("" if none was offered); None if none fits."""
    for name in offered or [""]:
        if name in supported:
            return supported[name]
    return None


# ---------------------------------------------------------------- channel codec


def encode_message(protocol: WsProtocol, channel: int, data: bytes) -> bytes | str:
    """One WebSocket message carrying `data` on `channel`."""
    if protocol.base64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


def decode_message(protocol: WsProtocol, message: bytes | str) -> tuple[int, bytes]:
    """Split a message into (channel, payload); raise ValueError if malformed."""
    if not message:
        raise ValueError("empty message")
    if protocol.base64:
        if not isinstance(message, str):
            raise ValueError("binary message on a base64 protocol")
        try:
            return ord(message[0]) - ord("0"), base64.b64decode(message[1:], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64 payload: {exc}") from exc
    if not isinstance(message, bytes):
        raise ValueError("text message on a binary protocol")
    return message[0], message[1:]


# ---------------------------------------------------------------- connection


class WsConnection:
    """An accepted WebSocket: whole messages in and out, pings answered, idle timeout."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ws: wsproto.WSConnection,
        *,
        idle_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = ws
        self._lock = asyncio.Lock()
        self._events: list[ev.Event] = []
        self._partial: list[bytes | str] = []
        self._closed = asyncio.Event()
        self.idle = IdleTimer(idle_timeout, self._writer.transport.abort)

    async def send(self, message: bytes | str) -> None:
        """Send one message; raise ConnectionError if the connection is closing."""
        event: ev.Event = (
            ev.TextMessage(data=message)
            if isinstance(message, str)
            else ev.BytesMessage(data=message)
        )
        await self._send_event(event, f"cannot send on websocket in state {self._ws.state.name}")

    async def receive(self) -> bytes | str | None:
        """The next whole data message; None once the connection is over."""
        while True:
            while self._events:
                message = await self._handle(self._events.pop(0))
                if message is not None:
                    return message
            if self._closed.is_set():
                return None
            await self._fill()

    async def close(self, code: int = 1000) -> None:
        """Send a close frame, wait briefly for the peer's, then drop the socket."""
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(ConnectionError, OSError):
                await self._send_event(ev.CloseConnection(code=code), "")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), _LINGER)
        self._writer.transport.abort()

    def abort(self) -> None:
        """Drop the socket at once."""
        self._writer.transport.abort()

    def is_open(self) -> bool:
        """Whether messages can still be sent."""
        return self._ws.state is ConnectionState.OPEN and not self._writer.is_closing()

    async def _fill(self) -> None:
        try:
            data = await self._reader.read(64 * 1024)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._closed.set()
            return
        self.idle.touch()
        try:
            self._ws.receive_data(data)
            self._events.extend(self._ws.events())
        except RemoteProtocolError as exc:
            log.warning("websocket protocol error", error=str(exc))
            self._closed.set()
            self._writer.transport.abort()

    async def _handle(self, event: ev.Event) -> bytes | str | None:
        match event:
            case ev.Message():
                self._partial.append(event.data)
                if not event.message_finished:
                    return None
                parts, self._partial = self._partial, []
                if isinstance(event, ev.TextMessage):
                    return "".join(str(p) for p in parts)
                return b"".join(p for p in parts if isinstance(p, bytes))
            case ev.Ping():
                with contextlib.suppress(ConnectionError, OSError):
                    await self._send_event(event.response(), "")
            case ev.CloseConnection():
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(ConnectionError, OSError):
                        await self._send_event(event.response(), "")
                self._closed.set()
        return None

    async def _send_event(self, event: ev.Event, problem: str) -> None:
        async with self._lock:
            closing = self._writer.is_closing() or self._ws.state is not ConnectionState.OPEN
            if closing and not isinstance(event, ev.CloseConnection):
                raise ConnectionResetError(problem or "websocket closed")
            self._writer.write(self._ws.send(event))
            self.idle.touch()
            await self._writer.drain()


# ---------------------------------------------------------------- channel multiplexer


class _Input:
    """A client→server channel: messages queued by the mux, b"" at EOF."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE_DEPTH)
        self.ended = False

    async def read(self) -> bytes:
        if self.ended and self.queue.empty():
            return b""
        chunk = await self.queue.get()
        if not chunk:
            self.ended = True
            self.queue.put_nowait(b"")  # keep returning EOF
        return chunk


class _Output:
    """A server→client channel."""

    def __init__(self, mux: ChannelMux, channel: int) -> None:
        self._mux = mux
        self._channel = channel

    async def write(self, data: bytes) -> None:
        if data:
            await self._mux.send(self._channel, data)

    async def announce(self) -> None:
        """An empty message: tells old clients the session is established."""
        await self._mux.send(self._channel, b"")

    async def close(self) -> None:
        return None  # the channel ends when the connection closes


class MessageConnection(Protocol):
    """Whole messages in and out: what the multiplexer needs of a WebSocket."""

    async def send(self, message: bytes | str) -> None:
        """Send one message; raise ConnectionError once the connection is closing."""
        ...

    async def receive(self) -> bytes | str | None:
        """The next whole data message; None once the connection is over."""
        ...


class ChannelMux:
    """Demultiplexes a WebSocket into channels; run `run()` for the connection's life."""

    def __init__(self, conn: MessageConnection, protocol: WsProtocol) -> None:
        self._conn = conn
        self._protocol = protocol
        self._inputs: dict[int, _Input] = {}

    def input(self, channel: int) -> _Input:
        return self._inputs.setdefault(channel, _Input())

    def output(self, channel: int) -> _Output:
        return _Output(self, channel)

    async def send(self, channel: int, data: bytes) -> None:
        await self._conn.send(encode_message(self._protocol, channel, data))

    async def run(self) -> None:
        """Route incoming messages until the connection closes, then EOF every input."""
        try:
            while (message := await self._conn.receive()) is not None:
                await self._route(message)
        finally:
            for channel in self._inputs.values():
                if not channel.ended:
                    channel.ended = True
                    with contextlib.suppress(asyncio.QueueFull):
                        channel.queue.put_nowait(b"")

    async def _route(self, message: bytes | str) -> None:
        try:
            channel, payload = decode_message(self._protocol, message)
        except ValueError as exc:
            log.warning("bad websocket message", error=str(exc))
            return
        if channel == CLOSE_CHANNEL and self._protocol.close_signal:
            if len(payload) == 1 and (target := self._inputs.get(payload[0])) and not target.ended:
                target.ended = True
                await target.queue.put(b"")
            return
        target = self._inputs.get(channel)
        if target is not None and not target.ended and payload:
            await target.queue.put(payload)


# ---------------------------------------------------------------- sessions


async def serve_remote_command(
    conn: WsConnection,
    protocol: WsProtocol,
    options: Options,
    start: Callable[[], Awaitable[ProcessStream]],
    *,
    report_exit_code: bool,
) -> None:
    """Run an exec/attach session over an accepted WebSocket, then close it."""
    mux = ChannelMux(conn, protocol)
    channels = Channels(
        error=mux.output(ERROR),
        stdin=mux.input(STDIN) if options.stdin else None,
        stdout=mux.output(STDOUT) if options.stdout else None,
        stderr=mux.output(STDERR) if options.stderr else None,
        resize=mux.input(RESIZE) if options.tty else None,
    )
    first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    style = StatusStyle.JSON if protocol.json_status else StatusStyle.TEXT

    async def session() -> None:
        await mux.output(first).announce()
        await serve(channels, start, style=style, report_exit_code=report_exit_code)

    await _run_with(conn, mux, session())


async def serve_port_forward(
    conn: WsConnection,
    protocol: WsProtocol,
    backend: StreamingBackend,
    pod_sandbox_id: str,
    ports: Sequence[int],
) -> None:
    """Forward each of `ports` over its channel pair, then close the WebSocket."""
    mux = ChannelMux(conn, protocol)

    async def one(index: int, port: int) -> None:
        data, error = mux.output(2 * index), mux.output(2 * index + 1)
        prefix = port.to_bytes(2, "little")
        await mux.send(2 * index, prefix)
        await mux.send(2 * index + 1, prefix)
        try:
            reader, writer = await backend.port_forward(pod_sandbox_id, port)
            await portforward.forward(mux.input(2 * index), data, reader, writer)
        except Exception as exc:  # reported on the port's error channel, if still possible
            log.info("port forward failed", pod_id=pod_sandbox_id, port=port, error=str(exc))
            with contextlib.suppress(ConnectionError):
                await error.write(portforward.error_message(port, pod_sandbox_id, exc).encode())

    async def all_ports() -> None:
        for index in range(len(ports)):
            mux.input(2 * index)  # register inputs before the mux starts routing
        await asyncio.gather(*(one(i, p) for i, p in enumerate(ports)))

    await _run_with(conn, mux, all_ports())


async def _run_with(conn: WsConnection, mux: ChannelMux, work: Awaitable[None]) -> None:
    """Run `work` while the mux routes input; whichever ends first ends the other."""
    tasks = [
        asyncio.create_task(mux.run()),
        asyncio.create_task(conn.idle.run()),
        asyncio.ensure_future(work),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[2] in done:
            await conn.close()  # graceful: the mux still runs to see the client's close
            tasks[2].result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.abort()
