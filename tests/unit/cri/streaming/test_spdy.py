"""SPDY/3.1 framing and header compression."""

from __future__ import annotations

import struct
import zlib

import pytest

from cri.streaming import spdy

DICT_ID = 0xE3C6A7C2  # Adler-32 of the SPDY/3 dictionary, as the spec's zlib streams carry it


class BitWriter:
    """Writes a deflate bit stream (RFC 1951), for hand-made compressed vectors."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def value(self, value: int, count: int) -> None:  # integers: least significant bit first
        self.bits += [(value >> i) & 1 for i in range(count)]

    def code(self, code: int, count: int) -> None:  # Huffman codes: most significant bit first
        self.bits += [(code >> i) & 1 for i in reversed(range(count))]

    def literal(self, byte: int) -> None:  # fixed Huffman literal/length alphabet
        if byte < 144:
            self.code(0x30 + byte, 8)
        else:
            self.code(0x190 + byte - 144, 9)

    def to_bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(padded[i + j] << j for j in range(8)) for i in range(0, len(padded), 8))


def hand_compressed_host_block() -> bytes:
    """`{"host": "x"}` as a SPDY header block, deflated by hand against the dictionary.

    The 8 bytes "\\0\\0\\0\\x04host" are not sent: a back-reference copies them out of
    the preset dictionary, so decoding only works with the exact dictionary.
    """
    header = bytes([0x78, 0xBB])  # deflate/32K window, FDICT set; 0x78BB % 31 == 0
    assert (header[0] << 8 | header[1]) % 31 == 0
    bits = BitWriter()
    bits.value(0, 1)  # not the final block: SPDY streams never end
    bits.value(1, 2)  # fixed Huffman codes
    for byte in b"\x00\x00\x00\x01":
        bits.literal(byte)
    distance = (
        4 + len(spdy.HEADER_DICTIONARY) - spdy.HEADER_DICTIONARY.index(b"\x00\x00\x00\x04host")
    )
    bits.code(262 - 256, 7)  # length code 262 = length 8, no extra bits
    assert 1025 <= distance <= 1536
    bits.code(20, 5)  # distance code 20 = 1025..1536, 9 extra bits
    bits.value(distance - 1025, 9)
    for byte in b"\x00\x00\x00\x01x":
        bits.literal(byte)
    bits.code(0, 7)  # end of block
    return header + struct.pack(">I", DICT_ID) + bits.to_bytes()


def test_dictionary_is_the_spdy3_constant() -> None:
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(spdy.HEADER_DICTIONARY) == DICT_ID
    assert spdy.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_hand_compressed_block_decodes_with_the_dictionary() -> None:
    assert spdy.HeaderDecompressor().decompress(hand_compressed_host_block()) == {"host": "x"}


def test_hand_compressed_block_decodes_inside_a_syn_reply() -> None:
    payload = struct.pack(">I", 5) + hand_compressed_host_block()
    frame = struct.pack(">HHI", 0x8003, 2, len(payload)) + payload
    assert spdy.FrameDecoder().feed(frame) == [spdy.SynReply(stream_id=5, headers={"host": "x"})]


def test_encoder_output_inflates_with_an_independent_zlib_stream() -> None:
    encoder = spdy.FrameEncoder()
    first = encoder.encode(spdy.SynStream(stream_id=1, headers={"streamtype": "error"}))
    second = encoder.encode(spdy.SynStream(stream_id=3, headers={"streamtype": "error"}))
    inflate = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    expected = spdy.pack_header_block({"streamtype": "error"})
    assert inflate.decompress(first[18:]) == expected
    assert inflate.decompress(second[18:]) == expected
    assert len(second) < len(first)  # one zlib context per direction: the repeat is cheap


def test_header_block_round_trip_keeps_nul_separated_values() -> None:
    headers = {"port": "8080", "multi": "a\x00b", "empty": ""}
    assert spdy.unpack_header_block(spdy.pack_header_block(headers)) == headers


def test_header_names_are_lower_cased() -> None:
    block = spdy.pack_header_block({"StreamType": "data"})
    assert b"streamtype" in block
    assert spdy.unpack_header_block(block) == {"streamtype": "data"}


FRAMES: list[spdy.Frame] = [
    spdy.SynStream(stream_id=1, headers={"streamtype": "stdin"}, priority=3, fin=True),
    spdy.SynStream(stream_id=7, associated_to=5, unidirectional=True),
    spdy.SynReply(stream_id=1),
    spdy.SynReply(stream_id=3, headers={"a": "b"}, fin=True),
    spdy.RstStream(stream_id=9, status=spdy.RstStatus.CANCEL),
    spdy.Settings(values={spdy.SettingId.INITIAL_WINDOW_SIZE: 1 << 20, 4: 100}, clear=True),
    spdy.Settings(),
    spdy.Ping(ping_id=0xFFFFFFFF),
    spdy.GoAway(last_good_stream_id=11, status=spdy.GoAwayStatus.PROTOCOL_ERROR),
    spdy.HeadersFrame(stream_id=5, headers={"x": "y"}, fin=True),
    spdy.WindowUpdate(stream_id=0, delta=0x7FFFFFFF),
    spdy.WindowUpdate(stream_id=3, delta=1),
    spdy.Data(stream_id=1, data=b"hello"),
    spdy.Data(stream_id=0x7FFFFFFF, fin=True),
]


def test_every_frame_type_round_trips() -> None:
    encoder, decoder = spdy.FrameEncoder(), spdy.FrameDecoder()
    assert decoder.feed(b"".join(encoder.encode(f) for f in FRAMES)) == FRAMES


def test_decoder_reassembles_frames_fed_byte_by_byte() -> None:
    encoder = spdy.FrameEncoder()
    encoded = b"".join(encoder.encode(f) for f in FRAMES)
    decoder = spdy.FrameDecoder()
    frames = [frame for i in range(len(encoded)) for frame in decoder.feed(encoded[i : i + 1])]
    assert frames == FRAMES


def test_wire_layout_of_a_data_frame_and_a_control_frame() -> None:
    assert (
        spdy.encode_data(spdy.Data(stream_id=3, data=b"ab", fin=True))
        == bytes.fromhex("0000000301000002") + b"ab"
    )
    ping = spdy.FrameEncoder().encode(spdy.Ping(ping_id=1))
    assert ping == bytes.fromhex("80030006 00000004 00000001")


def test_unknown_control_frames_are_skipped() -> None:
    credential = struct.pack(">HHI", 0x8003, 10, 3) + b"abc"
    ping = spdy.FrameEncoder().encode(spdy.Ping(ping_id=2))
    assert spdy.FrameDecoder().feed(credential + ping) == [spdy.Ping(ping_id=2)]


def test_a_fresh_zlib_stream_mid_connection_is_a_protocol_error() -> None:
    first = spdy.FrameEncoder().encode(spdy.SynReply(stream_id=1, headers={"a": "b"}))
    again = spdy.FrameEncoder().encode(spdy.SynReply(stream_id=3, headers={"a": "b"}))
    decoder = spdy.FrameDecoder()
    decoder.feed(first)
    with pytest.raises(spdy.ProtocolError, match="compression"):
        decoder.feed(again)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1", "version"),
        (struct.pack(">II", 0, 1) + b"x", "stream 0"),
        (struct.pack(">HHI", 0x8003, 6, 3) + b"\0\0\1", "length"),
        (struct.pack(">HHI", 0x8003, 9, 8) + struct.pack(">II", 1, 0), "delta 0"),
        (struct.pack(">HHI", 0x8003, 4, 12) + struct.pack(">III", 2, 7, 1), "SETTINGS"),
        (struct.pack(">HHI", 0x8003, 2, 8) + struct.pack(">I", 1) + b"junk", "compression"),
        (struct.pack(">HHI", 0x8003, 3, 8) + struct.pack(">II", 0, 1), "stream id 0"),
    ],
)
def test_malformed_frames_raise_protocol_error(raw: bytes, problem: str) -> None:
    with pytest.raises(spdy.ProtocolError, match=problem):
        spdy.FrameDecoder().feed(raw)


def test_duplicate_header_names_are_rejected() -> None:
    block = struct.pack(">I", 2) + 2 * (struct.pack(">I", 1) + b"a" + struct.pack(">I", 1) + b"b")
    with pytest.raises(spdy.ProtocolError, match="duplicate"):
        spdy.unpack_header_block(block)


def test_truncated_header_block_is_rejected() -> None:
    with pytest.raises(spdy.ProtocolError, match="truncated"):
        spdy.unpack_header_block(struct.pack(">II", 1, 10) + b"abc")


def test_oversized_header_block_is_rejected() -> None:
    deflate = zlib.compressobj(zdict=spdy.HEADER_DICTIONARY)
    bomb = deflate.compress(b"\0" * (spdy.MAX_HEADER_BLOCK + 1)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(spdy.ProtocolError, match="too large"):
        spdy.HeaderDecompressor().decompress(bomb)


def test_encoder_refuses_invalid_values() -> None:
    encoder = spdy.FrameEncoder()
    with pytest.raises(ValueError, match="stream id"):
        encoder.encode(spdy.Data(stream_id=0))
    with pytest.raises(ValueError, match="delta"):
        encoder.encode(spdy.WindowUpdate(stream_id=1, delta=0))
