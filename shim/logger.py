"""The CRI log writer: container output to `<ts> <stream> <P|F> <bytes>\\n` records.

Semantics follow what kubelet and containerd expect (containerd's
internal/cri/io/logger.go, read for behaviour):

- a line ends at "\\n"; a "\\r" right before it is dropped as well;
- a line longer than `max_line` (16 KiB) becomes P records of exactly
  `max_line` bytes and a final F record with the rest;
- bytes left without a newline when the stream ends become one P record;
- the timestamp is RFC3339Nano in UTC (trailing zeros of the fraction cut,
  as Go formats it), taken when the bytes were read;
- TTY containers have one stream and log it as "stdout".

Everything decoded from one read() is written with one write() (prompt, and
records of a chunk never interleave). Write errors (disk full, file removed
by a broken rotation) never reach the container: the records are dropped and
counted in `errors`, and the pipe keeps being drained.
"""

from __future__ import annotations

import contextlib
import os
import time

MAX_LINE = 16 * 1024
PARTIAL = b"P"
FULL = b"F"

_cached_second = -1
_cached_prefix = b""


def timestamp(ns: int) -> bytes:
    """RFC3339Nano (UTC, 'Z') for a time in ns since the epoch."""
    global _cached_second, _cached_prefix
    sec, frac = divmod(ns, 1_000_000_000)
    if sec != _cached_second:
        _cached_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
        _cached_second = sec
    if not frac:
        return _cached_prefix + b"Z"
    return _cached_prefix + b"." + (b"%09d" % frac).rstrip(b"0") + b"Z"


class LineSplitter:
    """Cuts one stream's bytes into (tag, content) records."""

    __slots__ = ("_max", "_pending")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The records completed by `data`; the rest waits for more."""
        records: list[tuple[bytes, bytes]] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if not self._pending and end - start <= self._max:
                # The common case: a whole short line inside this chunk.
                line = data[start:end]
                records.append((FULL, line[:-1] if line.endswith(b"\r") else line))
                start = end + 1
                continue
            self._pending += data[start:end]
            self._emit_long(records, strip_cr=True)
            line = bytes(self._pending)
            records.append((FULL, line[:-1] if line.endswith(b"\r") else line))
            self._pending.clear()
            start = end + 1
        self._pending += data[start:]
        self._emit_long(records, strip_cr=True)
        return records

    def finish(self) -> list[tuple[bytes, bytes]]:
        """Records for what is left at end of stream (a P record, if anything)."""
        records: list[tuple[bytes, bytes]] = []
        self._emit_long(records, strip_cr=False)
        if self._pending:
            records.append((PARTIAL, bytes(self._pending)))
            self._pending.clear()
        return records

    def _emit_long(self, records: list[tuple[bytes, bytes]], *, strip_cr: bool) -> None:
        # Only content strictly longer than max_line is cut, so a line of
        # exactly max_line bytes stays one F record. A trailing "\r" may turn
        # out to be half of "\r\n", which is not content: don't count it yet.
        pending = self._pending
        n = len(pending) - (1 if strip_cr and pending.endswith(b"\r") else 0)
        while n > self._max:
            records.append((PARTIAL, bytes(pending[: self._max])))
            del pending[: self._max]
            n -= self._max


def format_records(stream: bytes, ts: bytes, records: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s %s %s %s\n" % (ts, stream, tag, content) for tag, content in records)


class LogWriter:
    """Appends CRI records for the container's streams to one file."""

    def __init__(self, path: str, max_line: int = MAX_LINE) -> None:
        self.path = path
        self.errors = 0
        self._max_line = max_line
        self._splitters: dict[str, LineSplitter] = {}
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, data: bytes) -> None:
        """Log `data` read from `stream` ("stdout" or "stderr") just now."""
        splitter = self._splitter(stream)
        self._write(stream, splitter.feed(data))

    def finish(self, stream: str) -> None:
        """The stream reached EOF: write out its unterminated tail."""
        self._write(stream, self._splitter(stream).finish())

    @property
    def fd(self) -> int | None:
        """The log file's descriptor (None after a failed reopen or close)."""
        return self._fd

    def reopen(self) -> None:
        """Close and reopen the file at the same path (OSError if it cannot be created)."""
        fd = self._open()
        self._close_fd()
        self._fd = fd

    def close(self) -> None:
        for stream in list(self._splitters):
            self.finish(stream)
        self._close_fd()

    def _splitter(self, stream: str) -> LineSplitter:
        if stream not in self._splitters:
            self._splitters[stream] = LineSplitter(self._max_line)
        return self._splitters[stream]

    def _write(self, stream: str, records: list[tuple[bytes, bytes]]) -> None:
        if not records:
            return
        if self._fd is None:
            self.errors += len(records)
            return
        data = format_records(stream.encode(), timestamp(time.time_ns()), records)
        try:
            start = os.fstat(self._fd).st_size
        except OSError:
            self.errors += len(records)
            return
        try:
            _write_all(self._fd, data)
        except OSError:
            self.errors += len(records)
            # A partial write (disk full) would leave a torn record that breaks every reader:
            # cut the file back to where this batch began.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
