"""The SPDY server session, driven frame by frame over a socket pair."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest

from cri.streaming import spdy
from cri.streaming.spdy_session import SpdySession, SpdyStream, StreamClosed, StreamFilter


class Peer:
    """The client end: raw frames through our own encoder and decoder."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder, self.decoder = spdy.FrameEncoder(), spdy.FrameDecoder()
        self.pending: list[spdy.Frame] = []

    async def send(self, *frames: spdy.Frame) -> None:
        self.writer.write(b"".join(self.encoder.encode(f) for f in frames))
        await self.writer.drain()

    async def next_frame(self) -> spdy.Frame | None:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            if not data:
                return None
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    async def expect(self, kind: type[spdy.Frame]) -> spdy.Frame:
        while (frame := await self.next_frame()) is not None:
            if isinstance(frame, kind):
                return frame
        raise AssertionError(f"connection ended before a {kind.__name__}")

    async def open(self, stream_id: int, headers: Mapping[str, str] | None = None) -> None:
        await self.send(
            spdy.SynStream(stream_id=stream_id, headers=dict(headers or {"streamtype": "stdout"}))
        )
        assert await self.expect(spdy.SynReply) == spdy.SynReply(stream_id=stream_id)

    async def receive_data(self, stream_id: int, size: int) -> bytes:
        data = b""
        while len(data) < size:
            frame = await self.expect(spdy.Data)
            assert isinstance(frame, spdy.Data) and frame.stream_id == stream_id
            data += frame.data
        return data

    async def sync(self, ping_id: int) -> list[spdy.Frame]:
        """Round-trip a PING; return the frames that arrived before its echo."""
        await self.send(spdy.Ping(ping_id=ping_id))
        before = []
        while (frame := await self.next_frame()) != spdy.Ping(ping_id=ping_id):
            assert frame is not None
            before.append(frame)
        return before


@dataclass
class Pair:
    session: SpdySession
    peer: Peer
    runner: asyncio.Task[None]

    async def accept(self) -> SpdyStream:
        stream = await asyncio.wait_for(self.session.accept(), 5)
        assert stream is not None
        return stream


_made: list[Pair] = []


async def make_pair(idle_timeout: float = 60, stream_filter: StreamFilter | None = None) -> Pair:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer = Peer(*await asyncio.open_connection(sock=theirs))
    session = SpdySession(reader, writer, idle_timeout=idle_timeout, stream_filter=stream_filter)
    made = Pair(session, peer, asyncio.create_task(session.run()))
    _made.append(made)
    return made


@pytest.fixture(autouse=True)
async def close_pairs() -> AsyncIterator[None]:
    yield
    while _made:
        made = _made.pop()
        made.peer.writer.close()
        await asyncio.wait_for(made.runner, 5)
        made.session._writer.close()
        await made.peer.writer.wait_closed()
        await made.session._writer.wait_closed()


@pytest.fixture
async def pair() -> Pair:
    return await make_pair()


async def test_streams_are_replied_and_accepted_with_their_headers(pair: Pair) -> None:
    await pair.peer.open(1, {"streamtype": "error", "port": "80"})
    stream = await pair.accept()
    assert (stream.stream_id, stream.headers) == (1, {"streamtype": "error", "port": "80"})


async def test_data_and_fin_from_the_peer(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    await pair.peer.send(
        spdy.Data(stream_id=1, data=b"abc"), spdy.Data(stream_id=1, data=b"d", fin=True)
    )
    assert await stream.read() == b"abc"
    assert await stream.read() == b"d"
    assert await stream.read() == b""


async def test_writes_become_data_frames_and_close_a_fin(pair: Pair) -> None:
    await pair.peer.open(3)
    stream = await pair.accept()
    await stream.write(b"x" * 70000)
    await stream.close()
    await stream.close()
    frames = await pair.peer.sync(1)
    data = [f for f in frames if isinstance(f, spdy.Data)]
    assert [len(f.data) for f in data] == [65536, 70000 - 65536, 0]
    assert data[-1].fin and not data[0].fin
    with pytest.raises(StreamClosed):
        await stream.write(b"more")


async def test_consumed_data_reopens_the_peers_windows(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    for _ in range(3):
        await pair.peer.send(spdy.Data(stream_id=1, data=b"z" * 16384))
    for _ in range(3):
        await stream.read()
    updates = [f for f in await pair.peer.sync(1) if isinstance(f, spdy.WindowUpdate)]
    assert updates == [
        spdy.WindowUpdate(stream_id=1, delta=32768),
        spdy.WindowUpdate(stream_id=0, delta=32768),
    ]


async def test_a_peer_without_flow_control_is_not_throttled(pair: Pair) -> None:
    """moby/spdystream never sends WINDOW_UPDATE: blocking at 64 KiB would hang exec."""
    await pair.peer.open(1)
    stream = await pair.accept()
    await stream.write(b"y" * 300_000)
    assert len(await pair.peer.receive_data(1, 300_000)) == 300_000


async def test_a_flow_controlling_peer_is_held_to_its_window(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    await pair.peer.send(spdy.WindowUpdate(stream_id=0, delta=1 << 20))  # session window: plenty
    await pair.peer.sync(1)
    assert pair.session.strict_flow_control
    writing = asyncio.create_task(stream.write(b"w" * 100_000))
    assert len(await pair.peer.receive_data(1, 65536)) == 65536
    assert not [f for f in await pair.peer.sync(3) if isinstance(f, spdy.Data)]
    assert not writing.done()
    await pair.peer.send(spdy.WindowUpdate(stream_id=1, delta=40_000))
    assert len(await pair.peer.receive_data(1, 100_000 - 65536)) == 100_000 - 65536
    await asyncio.wait_for(writing, 5)


async def test_initial_window_setting_applies_to_open_streams(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    await pair.peer.send(spdy.Settings(values={spdy.SettingId.INITIAL_WINDOW_SIZE: 1000}))
    await pair.peer.sync(1)
    writing = asyncio.create_task(stream.write(b"s" * 5000))
    assert len(await pair.peer.receive_data(1, 1000)) == 1000
    assert not [f for f in await pair.peer.sync(3) if isinstance(f, spdy.Data)]
    await pair.peer.send(spdy.WindowUpdate(stream_id=1, delta=4000))
    assert len(await pair.peer.receive_data(1, 4000)) == 4000
    await asyncio.wait_for(writing, 5)


async def test_client_pings_are_echoed(pair: Pair) -> None:
    await pair.peer.send(spdy.Ping(ping_id=2))  # even ids are the server's own: not echoed
    assert await pair.peer.sync(5) == []


async def test_reset_by_the_peer_ends_both_directions(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    await pair.peer.send(spdy.RstStream(stream_id=1, status=spdy.RstStatus.CANCEL))
    await pair.peer.sync(1)
    assert await stream.read() == b""
    with pytest.raises(StreamClosed):
        await stream.write(b"x")


async def test_our_reset_is_sent(pair: Pair) -> None:
    await pair.peer.open(1)
    stream = await pair.accept()
    await stream.abort()
    assert await pair.peer.expect(spdy.RstStream) == spdy.RstStream(
        stream_id=1, status=spdy.RstStatus.CANCEL
    )


async def test_refused_streams_are_reset_and_not_accepted() -> None:
    made = await make_pair(stream_filter=lambda h: None if "port" in h else "no port")
    await made.peer.send(spdy.SynStream(stream_id=1, headers={"streamtype": "data"}))
    assert await made.peer.expect(spdy.RstStream) == spdy.RstStream(
        stream_id=1, status=spdy.RstStatus.REFUSED_STREAM
    )
    await made.peer.open(3, {"port": "1"})
    assert (await made.accept()).stream_id == 3
    made.peer.writer.close()
    await made.runner


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",  # SPDY/2
        spdy.FrameEncoder().encode(spdy.SynStream(stream_id=2)),  # even id from a client
    ],
)
async def test_protocol_errors_end_the_connection_with_goaway(garbage: bytes) -> None:
    made = await make_pair()
    made.peer.writer.write(garbage)
    goaway = await made.peer.expect(spdy.GoAway)
    assert isinstance(goaway, spdy.GoAway) and goaway.status == spdy.GoAwayStatus.PROTOCOL_ERROR
    await asyncio.wait_for(made.runner, 5)
    assert await made.session.accept() is None
    assert await made.peer.next_frame() is None


async def test_the_connection_ends_when_idle() -> None:
    made = await make_pair(idle_timeout=0.1)
    await asyncio.wait_for(made.runner, 5)
    assert made.session.ended
    assert await made.peer.next_frame() is None


async def test_close_says_goaway_and_ends_once_the_peer_leaves(pair: Pair) -> None:
    await pair.peer.open(1)
    closing = asyncio.create_task(pair.session.close())
    goaway = await pair.peer.expect(spdy.GoAway)
    assert goaway == spdy.GoAway(last_good_stream_id=1)
    assert await pair.peer.next_frame() is None  # we stopped writing
    pair.peer.writer.close()
    await asyncio.wait_for(closing, 5)


async def test_peer_eof_ends_every_stream() -> None:
    made = await make_pair()
    await made.peer.open(1)
    stream = await made.accept()
    made.peer.writer.close()
    await asyncio.wait_for(made.runner, 5)
    assert await stream.read() == b""
    with pytest.raises(StreamClosed):
        await stream.write(b"late")
    assert await made.session.accept() is None
