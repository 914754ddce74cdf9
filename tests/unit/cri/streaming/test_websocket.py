"""WebSocket channel framing, subprotocol choice and the channel multiplexer."""

from __future__ import annotations

import asyncio

import pytest

from cri.streaming import websocket as ws

BINARY = ws.EXEC_PROTOCOLS["v4.channel.k8s.io"]
BASE64 = ws.EXEC_PROTOCOLS["v4.base64.channel.k8s.io"]
V5 = ws.EXEC_PROTOCOLS["v5.channel.k8s.io"]


def test_binary_messages_carry_a_channel_byte() -> None:
    assert ws.encode_message(BINARY, 1, b"\n") == b"\x01\n"
    assert ws.decode_message(BINARY, b"\x00foo\n") == (0, b"foo\n")


def test_base64_messages_carry_an_ascii_digit_and_base64_text() -> None:
    assert ws.encode_message(BASE64, 1, b"\n") == "1Cg=="
    assert ws.decode_message(BASE64, "0Zm9vCg==") == (0, b"foo\n")
    assert ws.encode_message(BASE64, 3, b"") == "3"


@pytest.mark.parametrize(
    ("protocol", "message"),
    [(BINARY, b""), (BINARY, "0Zm9v"), (BASE64, b"\x00foo"), (BASE64, "0Zm9v!")],
)
def test_malformed_messages_are_rejected(protocol: ws.WsProtocol, message: bytes | str) -> None:
    with pytest.raises(ValueError):
        ws.decode_message(protocol, message)


def test_protocol_choice_follows_the_client_order() -> None:
    chosen = ws.choose_protocol(["v5.channel.k8s.io", "v4.channel.k8s.io"], ws.EXEC_PROTOCOLS)
    assert chosen is V5 and chosen.close_signal and chosen.json_status
    assert ws.choose_protocol([], ws.EXEC_PROTOCOLS) == ws.EXEC_PROTOCOLS[""]
    assert ws.choose_protocol(["v5.channel.k8s.io"], ws.PORT_FORWARD_PROTOCOLS) is None
    assert not ws.EXEC_PROTOCOLS["channel.k8s.io"].json_status


class FakeConnection:
    """Messages scripted by the test in, messages recorded out."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.sent: list[bytes | str] = []

    async def send(self, message: bytes | str) -> None:
        self.sent.append(message)

    async def receive(self) -> bytes | str | None:
        return await self.incoming.get()


async def read_all(channel: ws._Input) -> bytes:
    data = b""
    while chunk := await channel.read():
        data += chunk
    return data


async def test_v5_close_signal_ends_one_input_channel() -> None:
    conn = FakeConnection()
    mux = ws.ChannelMux(conn, V5)
    stdin, resize = mux.input(ws.STDIN), mux.input(ws.RESIZE)
    for message in (b"\x00abc", b"\x04{}", b"\xff\x00", b"\x00late"):
        conn.incoming.put_nowait(message)
    runner = asyncio.create_task(mux.run())
    assert await read_all(stdin) == b"abc"
    assert await resize.read() == b"{}"
    conn.incoming.put_nowait(None)
    await runner
    assert await resize.read() == b""


async def test_close_signal_is_plain_data_before_v5() -> None:
    conn = FakeConnection()
    mux = ws.ChannelMux(conn, BINARY)
    stdin = mux.input(ws.STDIN)
    conn.incoming.put_nowait(b"\xff\x00")  # channel 255: not ours, ignored
    conn.incoming.put_nowait(b"\x00data")
    conn.incoming.put_nowait(None)
    await mux.run()
    assert await read_all(stdin) == b"data"


async def test_bad_and_unknown_messages_are_skipped() -> None:
    conn = FakeConnection()
    mux = ws.ChannelMux(conn, BASE64)
    stdin = mux.input(ws.STDIN)
    for message in ("0!!!", "7aGk=", b"\x00raw", "0aGk=", None):
        conn.incoming.put_nowait(message)
    await mux.run()
    assert await read_all(stdin) == b"hi"


async def test_outputs_encode_per_protocol() -> None:
    conn = FakeConnection()
    mux = ws.ChannelMux(conn, BASE64)
    await mux.output(ws.STDOUT).write(b"ok")
    await mux.output(ws.STDERR).write(b"")  # empty writes send nothing...
    await mux.output(ws.ERROR).announce()  # ...except the explicit announcement
    assert conn.sent == ["1b2s=", "3"]
