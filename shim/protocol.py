"""The framed protocol on `shim.sock` and `template.sock`.

Message frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.

    request   {"id": n, "method": "start", "params": {...}}
    response  {"id": n, "result": ...}
           or {"id": n, "error": {"kind": "not_found", "message": "..."}}

Requests on one connection may overlap; responses carry the request id.
A frame longer than the reader's bound, or one that is not a JSON object,
closes that connection only (`ProtocolError`). The shim accepts requests up to
`MAX_REQUEST` (1 MiB); the client accepts responses up to `MAX_RESPONSE`
(64 MiB) because an exec_sync result carries up to 2 x 16 MiB in base64.

After a successful `exec_stream` or `attach` response the connection carries
stream frames instead: 1 byte channel, 4-byte big-endian length, payload.
Channels are in `shim.api` (CH_*): 0 stdin, 1 stdout, 2 stderr, 3 exit
(JSON {"exit_code": n}, last frame from the shim), 4 resize (JSON
{"width": w, "height": h}), 5 stdin closed.
"""

from __future__ import annotations

import asyncio
import json
import json.decoder
import json.encoder
import socket
import struct
from typing import Any

from shim import errors

MAX_REQUEST = 1 << 20
MAX_RESPONSE = 64 << 20
MAX_STREAM_PAYLOAD = 1 << 20

_LEN = struct.Struct(">I")
STREAM_HEADER = struct.Struct(">BI")

_KINDS: dict[str, type[errors.Error]] = {
    cls.kind: cls
    for cls in (
        errors.NotFound,
        errors.AlreadyExists,
        errors.InvalidArgument,
        errors.FailedPrecondition,
        errors.Unavailable,
        errors.DeadlineExceeded,
    )
}


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame; drop the connection."""


def _not_serializable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# json's C scanner and encoder, made once: json.loads and json.dumps wrap them in
# several Python calls per message, and every Python function a shim runs is pages
# of the template's written in the shim (see shim.template). Same output, and
# json.loads/json.dumps remain the fallback.
_SCAN = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]
_ENCODE = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None,  # no circular-reference check: messages are trees
        _not_serializable,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


def dumps(obj: object) -> str:
    """json.dumps(obj, separators=(",", ":")), through the C encoder made once."""
    if _ENCODE is not None:
        return "".join(_ENCODE(obj, 0))
    return json.dumps(obj, separators=(",", ":"))


def encode(message: dict[str, Any]) -> bytes:
    """One message frame."""
    body = dumps(message).encode()
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode()
        try:
            message, end = _SCAN(text, 0)
        except StopIteration:  # not a JSON value where it starts (maybe whitespace)
            end = -1
        if end != len(text):
            message = json.loads(text)  # whitespace around it, or the exact error
    except ValueError as e:
        raise ProtocolError(f"invalid JSON frame: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


async def read_message(reader: asyncio.StreamReader, limit: int) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream (between frames)."""
    try:
        header = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ProtocolError("truncated frame header") from None
        return None
    (length,) = _LEN.unpack(header)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {limit}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("truncated frame") from None
    return decode_body(body)


def take_message(buf: bytearray, limit: int) -> dict[str, Any] | None:
    """Remove and return the first whole message frame in `buf`; None if it has none yet."""
    body = take_frame(buf, limit)
    return None if body is None else decode_body(body)


def take_frame(buf: bytearray, limit: int) -> bytes | None:
    """Remove and return the body of the first whole frame in `buf`; None if none yet."""
    if len(buf) < _LEN.size:
        return None
    (length,) = _LEN.unpack_from(buf)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {limit}")
    end = _LEN.size + length
    if len(buf) < end:
        return None
    body = bytes(buf[_LEN.size : end])
    del buf[:end]
    return body


def read_message_blocking(sock: socket.socket, limit: int) -> dict[str, Any]:
    """Read one message from a blocking socket (the template has no event loop)."""
    (length,) = _LEN.unpack(_recv_exactly(sock, _LEN.size))
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {limit}")
    return decode_body(_recv_exactly(sock, length))


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed inside a frame")
        buf += chunk
    return bytes(buf)


def encode_stream(channel: int, payload: bytes) -> bytes:
    """One stream frame."""
    return STREAM_HEADER.pack(channel, len(payload)) + payload


async def read_stream(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next stream frame, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(STREAM_HEADER.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ProtocolError("truncated stream frame header") from None
        return None
    channel, length = STREAM_HEADER.unpack(header)
    if length > MAX_STREAM_PAYLOAD:
        raise ProtocolError(f"stream frame of {length} bytes exceeds the limit")
    try:
        return channel, await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("truncated stream frame") from None


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """The error object of a response; anything not a shim error is `internal`."""
    if isinstance(exc, errors.Error):
        return {"kind": exc.kind, "message": str(exc)}
    return {"kind": "internal", "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(obj: object) -> errors.Error:
    """The `shim.errors` exception for a response's error object."""
    if not isinstance(obj, dict):
        return errors.Error(f"malformed error from shim: {obj!r:.200}")
    cls = _KINDS.get(str(obj.get("kind")), errors.Error)
    return cls(str(obj.get("message", "")))


def response(request_id: object, result: object) -> dict[str, Any]:
    return {"id": request_id, "result": result}


def error_response(request_id: object, exc: BaseException) -> dict[str, Any]:
    return {"id": request_id, "error": error_to_wire(exc)}
