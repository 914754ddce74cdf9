"""A SPDY/3.1 server session on an upgraded HTTP/1.1 connection.

The client opens every stream; we answer each SYN_STREAM with SYN_REPLY at once
(client-go blocks until the reply arrives) and hand the stream to whoever calls
`accept()`. One stream, seen from here::

    SYN_STREAM ─► open ──peer FIN──► remote-closed ──our FIN──► done
                   └────our FIN───► local-closed ───peer FIN──┘
    RST_STREAM in any state ─► reset (reads return EOF, writes raise StreamClosed)

Flow control. We account SPDY/3.1 windows in both directions and send
WINDOW_UPDATE (per stream and for the session) as the application consumes data.
The peers that matter here — client-go via moby/spdystream, used by kubelet,
crictl and critest — neither send WINDOW_UPDATE nor honour ours. Blocking on a
send window that such a peer never reopens would hang every exec after 64 KiB, so
our send side enforces windows only once the peer has shown it does flow control
(a WINDOW_UPDATE, or SETTINGS with INITIAL_WINDOW_SIZE). Until then TCP provides
the backpressure. Symmetrically, a peer may overrun our receive window; we buffer
up to `_RECV_BUFFER_LIMIT` per stream and then stop reading the socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from cri.streaming import spdy
from cri.streaming.idle import IdleTimer

log = structlog.get_logger(__name__)

MAX_DATA_CHUNK = 64 * 1024
_RECV_BUFFER_LIMIT = 1024 * 1024
_LINGER = 2.0

StreamFilter = Callable[[Mapping[str, str]], str | None]


class _Abortable(Protocol):
    def abort(self) -> None: ...


class ByteWriter(Protocol):
    """Where a session writes: an `asyncio.StreamWriter`, or a WebSocket tunnel's writer."""

    @property
    def transport(self) -> _Abortable:
        """What `abort()` drops the connection through."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def is_closing(self) -> bool: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


class StreamClosed(ConnectionError):
    """Writing to a stream that was reset, already finished, or whose session ended."""


class SpdyStream:
    """One client-initiated stream: a byte pipe in each direction."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Mapping[str, str]) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self._session = session
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.remote_closed = False
        self.local_closed = False
        self.reset = False
        self.send_window = session.peer_initial_window
        self.unacked = 0

    async def read(self) -> bytes:
        """Next chunk the peer sent; b"" once the peer finished or reset the stream."""
        while not self._chunks:
            if self.remote_closed or self.reset:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < _RECV_BUFFER_LIMIT:
            self._space.set()
        await self._session.consumed(self, len(chunk))
        return chunk

    async def write(self, data: bytes) -> None:
        """Send `data` as one or more DATA frames, honouring flow control."""
        view = memoryview(data)
        while view:
            if self.local_closed or self.reset:
                raise StreamClosed(f"stream {self.stream_id} is closed")
            size = await self._session.reserve(self, min(len(view), MAX_DATA_CHUNK))
            await self._session.send(spdy.Data(stream_id=self.stream_id, data=bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close: tell the peer we will send no more (FIN). Idempotent, never raises."""
        if self.local_closed or self.reset:
            return
        self.local_closed = True
        try:
            await self._session.send(spdy.Data(stream_id=self.stream_id, fin=True))
        except ConnectionError:
            return
        self._session.forget_if_done(self)

    async def abort(self, status: int = spdy.RstStatus.CANCEL) -> None:
        """Reset the stream in both directions. Idempotent, never raises."""
        if self.reset:
            return
        self.on_reset()
        self._session.forget_if_done(self)
        with contextlib.suppress(ConnectionError):
            await self._session.send(spdy.RstStream(stream_id=self.stream_id, status=status))

    # -- called by the session's read loop

    async def on_data(self, data: bytes, fin: bool) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            self._readable.set()
            if self._buffered >= _RECV_BUFFER_LIMIT:
                self._space.clear()
                await self._space.wait()  # stop reading the socket: TCP backpressure
        if fin:
            self.on_remote_fin()

    def on_remote_fin(self) -> None:
        self.remote_closed = True
        self._readable.set()

    def on_reset(self) -> None:
        self.reset = True
        self._readable.set()
        self._space.set()


class SpdySession:
    """Serves one upgraded connection until the peer leaves or `close()` is called.

    Run `run()` as a task; meanwhile `accept()` yields the peer's streams. When the
    connection ends for any reason, `accept()` returns None and every stream reads
    EOF and refuses writes.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: ByteWriter,
        *,
        idle_timeout: float = 4 * 3600,
        stream_filter: StreamFilter | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._idle = IdleTimer(idle_timeout, self._on_idle)
        self._filter = stream_filter
        self._encoder = spdy.FrameEncoder()
        self._decoder = spdy.FrameDecoder()
        self._write_lock = asyncio.Lock()
        self._window_changed = asyncio.Condition()
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._streams: dict[int, SpdyStream] = {}
        self._last_stream_id = 0
        self._ended = asyncio.Event()
        self._goaway_sent = False
        self._goaway_received = False
        self._accepting = True
        self.peer_initial_window = spdy.DEFAULT_INITIAL_WINDOW
        self.send_window = spdy.DEFAULT_INITIAL_WINDOW
        self.strict_flow_control = False
        self._session_unacked = 0

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened, or None once the connection is over."""
        if self._ended.is_set() and self._incoming.empty():
            return None
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)  # keep answering None to later callers
        return stream

    def stop_accepting(self) -> None:
        """Refuse (RST) every stream the peer opens from now on.

        For sessions whose streams are all known up front: a stream nobody reads
        would fill its buffer and stall the whole connection.
        """
        self._accepting = False

    async def run(self) -> None:
        """Read and dispatch frames until EOF, a protocol error, idle timeout or close."""
        watchdog = asyncio.create_task(self._idle.run())
        try:
            await self._read_loop()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            await self._end()

    async def close(self, status: int = spdy.GoAwayStatus.OK) -> None:
        """Say GOAWAY, stop writing, let the peer finish reading, then drop the socket."""
        if not self._goaway_sent:
            self._goaway_sent = True
            try:
                await self.send(
                    spdy.GoAway(last_good_stream_id=self._last_stream_id, status=status)
                )
                if self._writer.can_write_eof():
                    self._writer.write_eof()
            except (ConnectionError, OSError):
                pass
        # Closing while the peer still sends would make the kernel answer with RST,
        # which can destroy output the peer has not read yet; so linger briefly.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), _LINGER)
        self._writer.transport.abort()

    # -- used by streams

    async def send(self, frame: spdy.Frame) -> None:
        async with self._write_lock:
            if self._writer.is_closing() or self._ended.is_set():
                raise StreamClosed("SPDY connection closed")
            self._writer.write(self._encoder.encode(frame))
            self._idle.touch()
            await self._writer.drain()

    async def reserve(self, stream: SpdyStream, want: int) -> int:
        """Take up to `want` bytes of send window for `stream`, waiting if enforced."""
        async with self._window_changed:
            while self.strict_flow_control and min(stream.send_window, self.send_window) <= 0:
                if stream.reset or stream.local_closed or self._ended.is_set():
                    raise StreamClosed(f"stream {stream.stream_id} is closed")
                await self._window_changed.wait()
        size = min(want, stream.send_window, self.send_window) if self.strict_flow_control else want
        stream.send_window -= size
        self.send_window -= size
        return size

    async def consumed(self, stream: SpdyStream, size: int) -> None:
        """Account bytes the application read and reopen the peer's windows."""
        half = spdy.DEFAULT_INITIAL_WINDOW // 2
        stream.unacked += size
        self._session_unacked += size
        try:
            if stream.unacked >= half and not stream.remote_closed and not stream.reset:
                delta, stream.unacked = stream.unacked, 0
                await self.send(spdy.WindowUpdate(stream_id=stream.stream_id, delta=delta))
            if self._session_unacked >= half:
                delta, self._session_unacked = self._session_unacked, 0
                await self.send(spdy.WindowUpdate(stream_id=0, delta=delta))
        except ConnectionError:
            pass  # the connection is gone; the reader sees EOF soon enough

    def forget_if_done(self, stream: SpdyStream) -> None:
        if (stream.local_closed and stream.remote_closed) or stream.reset:
            self._streams.pop(stream.stream_id, None)

    # -- the read side

    async def _read_loop(self) -> None:
        try:
            while True:
                head = spdy.parse_head(await self._reader.readexactly(8))
                payload = await self._reader.readexactly(head.length)
                self._idle.touch()
                frame = self._decoder.decode(head, payload)
                if frame is not None:
                    await self._dispatch(frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        except spdy.ProtocolError as exc:
            log.warning("spdy protocol error", error=str(exc))
            await self._send_quietly(
                spdy.GoAway(
                    last_good_stream_id=self._last_stream_id,
                    status=spdy.GoAwayStatus.PROTOCOL_ERROR,
                )
            )
            self._writer.close()  # a malformed frame ends this connection, and only it

    async def _dispatch(self, frame: spdy.Frame) -> None:
        match frame:
            case spdy.Data():
                await self._on_data(frame)
            case spdy.SynStream():
                await self._on_syn_stream(frame)
            case spdy.RstStream():
                if stream := self._streams.pop(frame.stream_id, None):
                    stream.on_reset()
                    await self._wake_writers()
            case spdy.WindowUpdate():
                await self._on_window_update(frame)
            case spdy.Settings():
                await self._on_settings(frame)
            case spdy.Ping() if frame.ping_id % 2 == 1:
                await self._send_quietly(frame)  # client pings are odd: echo them
            case spdy.GoAway():
                self._goaway_received = True  # the peer opens no more streams
            case _:
                pass  # SYN_REPLY/HEADERS for streams we never open, PING replies

    async def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_stream_id:
            raise spdy.ProtocolError(f"bad client stream id {sid}")
        self._last_stream_id = sid
        problem = self._filter(frame.headers) if self._filter else None
        if not self._accepting:
            problem = "no more streams expected"
        if problem is not None or self._goaway_sent or self._goaway_received:
            log.info("spdy stream refused", stream_id=sid, reason=problem or "going away")
            await self._send_quietly(
                spdy.RstStream(stream_id=sid, status=spdy.RstStatus.REFUSED_STREAM)
            )
            return
        stream = SpdyStream(self, sid, frame.headers)
        self._streams[sid] = stream
        await self.send(spdy.SynReply(stream_id=sid))
        if frame.fin:
            stream.on_remote_fin()
        self._incoming.put_nowait(stream)

    async def _on_data(self, frame: spdy.Data) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None or stream.remote_closed:
            return  # late data for a stream we already finished: drop it
        await stream.on_data(frame.data, frame.fin)
        if frame.fin:
            self.forget_if_done(stream)

    async def _on_window_update(self, frame: spdy.WindowUpdate) -> None:
        self.strict_flow_control = True
        if frame.stream_id == 0:
            self.send_window += frame.delta
        elif stream := self._streams.get(frame.stream_id):
            stream.send_window += frame.delta
        await self._wake_writers()

    async def _on_settings(self, frame: spdy.Settings) -> None:
        size = frame.values.get(spdy.SettingId.INITIAL_WINDOW_SIZE)
        if size is None:
            return
        self.strict_flow_control = True
        delta, self.peer_initial_window = size - self.peer_initial_window, size
        for stream in self._streams.values():
            stream.send_window += delta
        await self._wake_writers()

    async def _wake_writers(self) -> None:
        async with self._window_changed:
            self._window_changed.notify_all()

    async def _send_quietly(self, frame: spdy.Frame) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.send(frame)

    def _on_idle(self) -> None:
        log.info("spdy connection idle timeout")
        self._writer.transport.abort()

    async def _end(self) -> None:
        self._ended.set()
        for stream in self._streams.values():
            stream.on_reset()
        self._streams.clear()
        self._incoming.put_nowait(None)
        await self._wake_writers()
