"""Framing and error mapping of the shim protocol."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from shim import errors, protocol


def reader_for(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_message_round_trip() -> None:
    msg = {"id": 7, "method": "kill", "params": {"signal": 9, "all": False}}
    r = reader_for(protocol.encode(msg) + protocol.encode({"id": 8}))
    assert await protocol.read_message(r, protocol.MAX_REQUEST) == msg
    assert await protocol.read_message(r, protocol.MAX_REQUEST) == {"id": 8}
    assert await protocol.read_message(r, protocol.MAX_REQUEST) is None


async def test_oversized_frame_is_rejected_before_reading_it() -> None:
    r = reader_for((2000).to_bytes(4, "big") + b"x" * 10)
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        await protocol.read_message(r, 1000)


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00", (10).to_bytes(4, "big") + b"{}", (2).to_bytes(4, "big") + b"[]"],
    ids=["short header", "short body", "not an object"],
)
async def test_malformed_frames(data: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        await protocol.read_message(reader_for(data), protocol.MAX_REQUEST)


async def test_invalid_json() -> None:
    with pytest.raises(protocol.ProtocolError, match="JSON"):
        await protocol.read_message(reader_for((3).to_bytes(4, "big") + b"{x}"), 100)


async def test_stream_frames() -> None:
    data = protocol.encode_stream(1, b"out") + protocol.encode_stream(3, b'{"exit_code":0}')
    r = reader_for(data)
    assert await protocol.read_stream(r) == (1, b"out")
    assert await protocol.read_stream(r) == (3, b'{"exit_code":0}')
    assert await protocol.read_stream(r) is None


async def test_oversized_stream_frame() -> None:
    r = reader_for(bytes([0]) + (protocol.MAX_STREAM_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(protocol.ProtocolError):
        await protocol.read_stream(r)


@pytest.mark.parametrize(
    "exc",
    [
        errors.NotFound("container c1 has no task"),
        errors.AlreadyExists("x"),
        errors.InvalidArgument("x"),
        errors.FailedPrecondition("x"),
        errors.Unavailable("x"),
        errors.DeadlineExceeded("x"),
    ],
)
def test_error_kinds_round_trip(exc: errors.Error) -> None:
    back = protocol.error_from_wire(protocol.error_to_wire(exc))
    assert type(back) is type(exc) and str(back) == str(exc)


def test_unexpected_exceptions_become_internal() -> None:
    wire = protocol.error_to_wire(KeyError("k"))
    assert wire["kind"] == "internal"
    assert type(protocol.error_from_wire(wire)) is errors.Error
    assert type(protocol.error_from_wire("garbage")) is errors.Error


def test_blocking_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.encode({"id": 1, "method": "spawn"}))
        assert protocol.read_message_blocking(b, 100) == {"id": 1, "method": "spawn"}
        a.sendall((500).to_bytes(4, "big"))
        with pytest.raises(protocol.ProtocolError):
            protocol.read_message_blocking(b, 100)
        a.sendall((4).to_bytes(4, "big") + b"{")
        a.close()
        with pytest.raises(protocol.ProtocolError):
            protocol.read_message_blocking(b, 100)


@pytest.mark.parametrize(
    "message",
    [
        {"id": 1, "result": {"pid": 7, "ok": True, "f": 1.5, "none": None}},
        {"id": "x", "error": {"kind": "internal", "message": 'é\n"\\ \u2028'}},
        {"id": 2, "result": [1, [2, {}], (3, 4)]},
    ],
)
def test_encoding_is_compact_json(message: dict[str, object]) -> None:
    frame = protocol.encode(message)
    body = json.dumps(message, separators=(",", ":")).encode()
    assert frame == len(body).to_bytes(4, "big") + body


def test_encoding_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError, match="bytes"):
        protocol.encode({"id": 1, "result": b"raw"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1}', {"a": 1}),
        (b' \n{"a": [1, 2]}\t', {"a": [1, 2]}),  # whitespace around the object
        ('{"é":"\u2028"}'.encode(), {"é": "\u2028"}),
    ],
)
def test_decoding_takes_any_json_object(body: bytes, expected: object) -> None:
    assert protocol.decode_body(body) == expected


@pytest.mark.parametrize("body", [b'{"a":1} x', b'{"a":1}{}', b"\xff{}", b"[1]", b"", b"nul"])
def test_decoding_refuses_anything_else(body: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(body)
