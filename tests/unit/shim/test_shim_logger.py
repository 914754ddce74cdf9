"""CRI log records: line splitting, timestamps and write errors."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shim import logger

F, P = logger.FULL, logger.PARTIAL


def split(chunks: list[bytes], max_line: int = 8) -> list[tuple[bytes, bytes]]:
    s = logger.LineSplitter(max_line)
    out = [r for c in chunks for r in s.feed(c)]
    return out + s.finish()


def test_lines_and_crlf() -> None:
    assert split([b"a\nbb\r\n\nc\rd\n"]) == [(F, b"a"), (F, b"bb"), (F, b""), (F, b"c\rd")]


def test_exactly_max_is_one_full_record() -> None:
    assert split([b"12345678\n"]) == [(F, b"12345678")]
    assert split([b"12345678\r\n"]) == [(F, b"12345678")]
    assert split([b"123456789\n"]) == [(P, b"12345678"), (F, b"9")]


def test_crlf_split_across_reads_at_the_limit() -> None:
    assert split([b"12345678\r", b"\nx\n"]) == [(F, b"12345678"), (F, b"x")]


def test_long_line_over_many_reads() -> None:
    records = split([b"ab"] * 10 + [b"\n"])
    assert records == [(P, b"abababab"), (P, b"abababab"), (F, b"abab")]


def test_tail_without_newline_is_partial() -> None:
    assert split([b"x\ntail"]) == [(F, b"x"), (P, b"tail")]
    assert split([b"tail\r"]) == [(P, b"tail\r")]
    assert split([b""]) == []


@given(st.lists(st.binary(max_size=40), max_size=12))
def test_joining_records_gives_back_the_lines(chunks: list[bytes]) -> None:
    records = split(chunks)
    assert all(len(content) <= 8 for _, content in records)
    lines, cur = [], b""
    for tag, content in records:
        cur += content
        if tag == F:
            lines.append(cur)
            cur = b""
    data = b"".join(chunks)
    expected = [ln[:-1] if ln.endswith(b"\r") else ln for ln in data.split(b"\n")[:-1]]
    assert lines == expected
    assert cur == data.split(b"\n")[-1]


def test_timestamp_is_rfc3339nano_utc() -> None:
    assert logger.timestamp(0) == b"1970-01-01T00:00:00Z"
    assert logger.timestamp(1_500_000_000) == b"1970-01-01T00:00:01.5Z"
    assert logger.timestamp(86_400_000_000_123) == b"1970-01-02T00:00:00.000000123Z"


def test_writer_formats_records(tmp_path: Path) -> None:
    w = logger.LogWriter(str(tmp_path / "c.log"), max_line=4)
    w.write("stdout", b"hello\nab")
    w.write("stderr", b"e\n")
    w.close()
    lines = (tmp_path / "c.log").read_bytes().splitlines()
    shape = [re.sub(rb"^\S+ ", b"", ln) for ln in lines]
    assert shape == [b"stdout P hell", b"stdout F o", b"stderr F e", b"stdout P ab"]
    assert all(re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ", ln) for ln in lines)


def test_write_errors_are_counted_not_raised() -> None:
    w = logger.LogWriter("/dev/full")
    w.write("stdout", b"a\nb\n")
    assert w.errors == 2
    w.close()


def test_reopen_creates_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = logger.LogWriter(str(path))
    w.write("stdout", b"one\n")
    path.rename(tmp_path / "c.log.1")
    w.reopen()
    w.write("stdout", b"two\n")
    w.close()
    assert path.read_bytes().endswith(b" stdout F two\n")
    assert (tmp_path / "c.log.1").read_bytes().endswith(b" stdout F one\n")
