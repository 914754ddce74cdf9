"""SPDY/3.1 framing: frame records, their binary encoding, and header-block compression.

Sans-IO: nothing here touches a socket. `FrameEncoder` and `FrameDecoder` each own
one zlib context, because SPDY compresses every header block of one direction of a
connection as a single continuous zlib stream (primed with `HEADER_DICTIONARY`) —
so one encoder and one decoder must live exactly as long as the connection.

Wire layout (all integers big-endian)::

    control frame  |1| version(15) | type(16) | flags(8) | length(24) | payload |
    data frame     |0| stream-id(31)          | flags(8) | length(24) | payload |

A header block, before compression, is ``n(32) { len(32) name len(32) value }*n``;
several values of one name are joined with NUL.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

VERSION = 3
DEFAULT_INITIAL_WINDOW = 64 * 1024
MAX_FRAME_PAYLOAD = (1 << 24) - 1
# A decompressed header block larger than this is treated as hostile (zlib bomb).
MAX_HEADER_BLOCK = 256 * 1024

_HEAD = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_STREAM_MASK = 0x7FFFFFFF

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 11


class SettingId(enum.IntEnum):
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


class ProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3.1; the connection must end."""


def _build_dictionary() -> bytes:
    """The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1).

    It is a protocol constant: 65 length-prefixed words followed by one raw tail.
    Its Adler-32 (the zlib DICTID on the wire) is 0xE3C6A7C2.
    """
    # One spec word per name; split() keeps the 57 plain names readable.
    words = (  # noqa: SIM905
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer "
        "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status "
    ).split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie"]
    words += ["keep-alive", "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found"
        "500 Internal Server Error501 Not Implemented503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    prefixed = b"".join(_U32.pack(len(w)) + w.encode() for w in words)
    return prefixed + tail.encode()


HEADER_DICTIONARY = _build_dictionary()

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_to: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    values: Mapping[int, int] = field(default_factory=dict)
    clear: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data
)


# ---------------------------------------------------------------- header blocks


def pack_header_block(headers: Headers) -> bytes:
    """Serialize headers (names lower-cased, as SPDY requires) without compression."""
    parts = [_U32.pack(len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def unpack_header_block(block: bytes) -> dict[str, str]:
    """Parse an uncompressed header block; raise ProtocolError if it is malformed."""
    count, pos = _take_u32(block, 0)
    headers: dict[str, str] = {}
    for _ in range(count):
        name, pos = _take_string(block, pos)
        value, pos = _take_string(block, pos)
        name = name.lower()
        if not name or name in headers:
            raise ProtocolError(f"empty or duplicate header name {name!r}")
        headers[name] = value
    if pos != len(block):
        raise ProtocolError("trailing bytes after header block")
    return headers


def _take_u32(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise ProtocolError("truncated header block")
    return _U32.unpack_from(buf, pos)[0], pos + 4


def _take_string(buf: bytes, pos: int) -> tuple[str, int]:
    size, pos = _take_u32(buf, pos)
    if pos + size > len(buf):
        raise ProtocolError("truncated header block")
    try:
        return buf[pos : pos + size].decode(), pos + size
    except UnicodeDecodeError as exc:
        raise ProtocolError("header is not UTF-8") from exc


class HeaderCompressor:
    """One direction's header compression context (a single zlib stream)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, zdict=HEADER_DICTIONARY
        )

    def compress(self, headers: Headers) -> bytes:
        # A sync flush ends each block on a byte boundary so the peer can inflate
        # it fully while the stream continues with the next block.
        z = self._z
        return z.compress(pack_header_block(headers)) + z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving end of one direction's header compression context."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, payload: bytes) -> dict[str, str]:
        try:
            block = self._z.decompress(payload, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise ProtocolError(f"bad header compression: {exc}") from exc
        if self._z.unconsumed_tail:
            raise ProtocolError("header block too large")
        return unpack_header_block(block)


# ---------------------------------------------------------------- encoding


def _control(kind: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise ValueError("control frame payload too large")
    return _HEAD.pack(0x80000000 | VERSION << 16 | kind, flags << 24 | len(payload)) + payload


def encode_data(frame: Data) -> bytes:
    """Encode a DATA frame (no compression context needed)."""
    _check_stream_id(frame.stream_id)
    if len(frame.data) > MAX_FRAME_PAYLOAD:
        raise ValueError("data frame payload too large")
    flags = FLAG_FIN if frame.fin else 0
    return _HEAD.pack(frame.stream_id, flags << 24 | len(frame.data)) + frame.data


def _check_stream_id(stream_id: int) -> None:
    if not 0 < stream_id <= _STREAM_MASK:
        raise ValueError(f"invalid stream id {stream_id}")


class FrameEncoder:
    """Turns frame records into bytes for one direction of one connection."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data():
                return encode_data(frame)
            case SynStream():
                return self._syn_stream(frame)
            case SynReply() | HeadersFrame():
                return self._with_headers(frame)
            case _:
                return _encode_simple(frame)

    def _syn_stream(self, frame: SynStream) -> bytes:
        _check_stream_id(frame.stream_id)
        flags = (FLAG_FIN if frame.fin else 0) | (
            FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
        )
        fixed = _U32X2.pack(frame.stream_id, frame.associated_to) + bytes(
            [(frame.priority & 7) << 5, 0]
        )
        return _control(FrameType.SYN_STREAM, flags, fixed + self._headers.compress(frame.headers))

    def _with_headers(self, frame: SynReply | HeadersFrame) -> bytes:
        _check_stream_id(frame.stream_id)
        kind = FrameType.SYN_REPLY if isinstance(frame, SynReply) else FrameType.HEADERS
        payload = _U32.pack(frame.stream_id) + self._headers.compress(frame.headers)
        return _control(kind, FLAG_FIN if frame.fin else 0, payload)


def _encode_simple(frame: Frame) -> bytes:
    """Encode the control frames that carry no header block."""
    match frame:
        case RstStream(stream_id=sid, status=status):
            return _control(FrameType.RST_STREAM, 0, _U32X2.pack(sid, status))
        case Settings(values=values, clear=clear):
            body = b"".join(_U32X2.pack(k & 0xFFFFFF, v) for k, v in values.items())
            payload = _U32.pack(len(values)) + body
            return _control(FrameType.SETTINGS, FLAG_CLEAR_SETTINGS if clear else 0, payload)
        case Ping(ping_id=pid):
            return _control(FrameType.PING, 0, _U32.pack(pid))
        case GoAway(last_good_stream_id=last, status=status):
            return _control(FrameType.GOAWAY, 0, _U32X2.pack(last, status))
        case WindowUpdate(stream_id=sid, delta=delta):
            if not 0 < delta <= _STREAM_MASK:
                raise ValueError(f"invalid window delta {delta}")
            return _control(FrameType.WINDOW_UPDATE, 0, _U32X2.pack(sid, delta))
    raise TypeError(f"not a frame: {frame!r}")


# ---------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameHead:
    """The fixed 8-byte prefix of any frame."""

    control: bool
    version: int
    kind: int  # control frame type, or the stream id for data frames
    flags: int
    length: int


def parse_head(head: bytes) -> FrameHead:
    """Parse the 8-byte frame prefix."""
    first, second = _HEAD.unpack(head)
    control = bool(first & 0x80000000)
    version = (first >> 16) & 0x7FFF if control else 0
    kind = first & 0xFFFF if control else first & _STREAM_MASK
    return FrameHead(
        control=control, version=version, kind=kind, flags=second >> 24, length=second & 0xFFFFFF
    )


class FrameDecoder:
    """Turns bytes from one direction of one connection into frame records.

    Use `decode(head, payload)` when the caller reads exact sizes from a stream, or
    `feed(data)` to push arbitrary chunks. Unknown control frame types are skipped
    (the SPDY spec requires ignoring them); any malformed frame raises ProtocolError.
    """

    def __init__(self) -> None:
        self._headers = HeaderDecompressor()
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            head = parse_head(bytes(self._buffer[:8]))
            if len(self._buffer) < 8 + head.length:
                break
            payload = bytes(self._buffer[8 : 8 + head.length])
            del self._buffer[: 8 + head.length]
            frame = self.decode(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def decode(self, head: FrameHead, payload: bytes) -> Frame | None:
        if not head.control:
            if head.kind == 0:
                raise ProtocolError("data frame for stream 0")
            return Data(stream_id=head.kind, data=payload, fin=bool(head.flags & FLAG_FIN))
        if head.version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {head.version}")
        try:
            return self._control(head, payload)
        except struct.error as exc:
            raise ProtocolError(f"short control frame of type {head.kind}") from exc

    def _control(self, head: FrameHead, payload: bytes) -> Frame | None:
        fin = bool(head.flags & FLAG_FIN)
        match head.kind:
            case FrameType.SYN_STREAM:
                return self._syn_stream(head, payload)
            case FrameType.SYN_REPLY:
                sid = _stream_id(payload)
                return SynReply(
                    stream_id=sid, headers=self._headers.decompress(payload[4:]), fin=fin
                )
            case FrameType.HEADERS:
                sid = _stream_id(payload)
                return HeadersFrame(
                    stream_id=sid, headers=self._headers.decompress(payload[4:]), fin=fin
                )
            case _:
                return _decode_simple(head, payload)

    def _syn_stream(self, head: FrameHead, payload: bytes) -> SynStream:
        sid = _stream_id(payload)
        associated = _U32.unpack_from(payload, 4)[0] & _STREAM_MASK
        return SynStream(
            stream_id=sid,
            associated_to=associated,
            priority=payload[8] >> 5,
            headers=self._headers.decompress(payload[10:]),
            fin=bool(head.flags & FLAG_FIN),
            unidirectional=bool(head.flags & FLAG_UNIDIRECTIONAL),
        )


def _stream_id(payload: bytes) -> int:
    sid: int = _U32.unpack_from(payload, 0)[0] & _STREAM_MASK
    if sid == 0:
        raise ProtocolError("stream id 0 in a stream frame")
    return sid


def _decode_simple(head: FrameHead, payload: bytes) -> Frame | None:
    match head.kind:
        case FrameType.RST_STREAM:
            _expect_length(head, payload, 8)
            return RstStream(stream_id=_stream_id(payload), status=_U32.unpack_from(payload, 4)[0])
        case FrameType.SETTINGS:
            return _decode_settings(head, payload)
        case FrameType.PING:
            _expect_length(head, payload, 4)
            return Ping(ping_id=_U32.unpack(payload)[0])
        case FrameType.GOAWAY:
            _expect_length(head, payload, 8)
            last, status = _U32X2.unpack(payload)
            return GoAway(last_good_stream_id=last & _STREAM_MASK, status=status)
        case FrameType.WINDOW_UPDATE:
            _expect_length(head, payload, 8)
            sid, delta = _U32X2.unpack(payload)
            delta &= _STREAM_MASK
            if delta == 0:
                raise ProtocolError("window update with delta 0")
            return WindowUpdate(stream_id=sid & _STREAM_MASK, delta=delta)
    return None  # unknown (or obsolete CREDENTIAL) control frame: ignore it


def _expect_length(head: FrameHead, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ProtocolError(
            f"control frame type {head.kind} has length {len(payload)}, want {size}"
        )


def _decode_settings(head: FrameHead, payload: bytes) -> Settings:
    count = _U32.unpack_from(payload, 0)[0]
    if len(payload) != 4 + 8 * count:
        raise ProtocolError("SETTINGS length does not match its entry count")
    values = {}
    for i in range(count):
        key, value = _U32X2.unpack_from(payload, 4 + 8 * i)
        values[key & 0xFFFFFF] = value
    return Settings(values=values, clear=bool(head.flags & FLAG_CLEAR_SETTINGS))
