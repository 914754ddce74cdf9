"""Exec and attach sessions, independent of the wire (SPDY streams or WebSocket channels).

A session, once the transport has its channels::

    start backend ─► pump stdin ──────────────► (runs until the client closes stdin)
                  ─► pump resize ─────────────► (TTY only)
                  ─► pump output to stdout/stderr until the process's output ends
                  ─► wait for exit ─► close stdout/stderr ─► status on the error channel

The input pumps never end a session; the end of the output and the exit do. If the
client goes away, writing output fails (or the transport cancels us) and the
backend is closed — which kills an exec'd process, so nothing is left running.

Status on the error channel (remotecommand protocol v4 and later): one
`metav1.Status` JSON — Success; Failure/NonZeroExitCode with the exit code as an
`ExitCode` cause; or Failure/InternalError. Older versions get plain text, and
nothing on success.
"""

from __future__ import annotations

import asyncio
import codecs
import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from cri.api.v1 import api_pb2
from cri.streaming.api import STDERR, STDOUT, ProcessStream

log = structlog.get_logger(__name__)

STREAM_CREATION_TIMEOUT = 30.0

# SPDY remote-command subprotocols, most preferred first (X-Stream-Protocol-Version).
SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
_VERSIONS = {"v5.channel.k8s.io": 5, **{p: 4 - i for i, p in enumerate(SPDY_PROTOCOLS)}}

STREAM_TYPE_HEADER = "streamtype"
_MAX_RESIZE_BUFFER = 4096


class InputChannel(Protocol):
    """Bytes from the client (stdin or resize)."""

    async def read(self) -> bytes:
        """Next chunk; b"" once the client closed the channel or the connection ended."""
        ...


class OutputChannel(Protocol):
    """Bytes to the client (stdout, stderr or the error channel)."""

    async def write(self, data: bytes) -> None:
        """Send `data`; raises ConnectionError once the client is gone."""
        ...

    async def close(self) -> None:
        """Tell the client no more data follows. Idempotent, never raises."""
        ...


class StatusStyle(enum.Enum):
    JSON = "json"  # protocol v4+: a metav1.Status object
    TEXT = "text"  # v1-v3: the error message only, nothing on success


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Which stdio streams a request asked for."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def of(cls, req: api_pb2.ExecRequest | api_pb2.AttachRequest) -> Options:
        return cls(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty)


@dataclass(frozen=True, slots=True, kw_only=True)
class Channels:
    """The transport's channels for one session; absent ones were not requested."""

    error: OutputChannel
    stdin: InputChannel | None = None
    stdout: OutputChannel | None = None
    stderr: OutputChannel | None = None
    resize: InputChannel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a session ended, before it is encoded for a protocol version."""

    exit_code: int | None = None  # None: success or error below
    error: str | None = None


def protocol_version(name: str) -> int:
    """The remote-command protocol version number for a subprotocol name (1..5)."""
    return _VERSIONS.get(name, 1)


def status_style(version: int) -> StatusStyle:
    return StatusStyle.JSON if version >= 4 else StatusStyle.TEXT


# ---------------------------------------------------------------- the session


async def serve(
    channels: Channels,
    start: Callable[[], Awaitable[ProcessStream]],
    *,
    style: StatusStyle,
    report_exit_code: bool,
) -> Outcome:
    """Run one exec/attach session over `channels`; return how it ended.

    Raises ConnectionError (or is cancelled) when the client went away; the
    backend is closed in every case.
    """
    try:
        process = await start()
    except Exception as exc:
        log.warning("remote command start failed", error=str(exc))
        outcome = Outcome(error=str(exc) or type(exc).__name__)
    else:
        try:
            code = await _run(process, channels)
        finally:
            await _release(process)
        outcome = Outcome(exit_code=code if report_exit_code and code != 0 else None)
    await _finish(channels, outcome, style)
    return outcome


async def _release(process: ProcessStream) -> None:
    """Close the backend even if we are being cancelled (client gone, server stopping)."""
    closing = asyncio.ensure_future(process.close())
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await closing  # finish killing the process, then honour the cancellation
        raise


async def _run(process: ProcessStream, channels: Channels) -> int:
    # Not a TaskGroup: the input pumps must not outlive the output, and an error
    # writing output (client gone) must surface as itself, not as an ExceptionGroup.
    feeders = []
    if channels.stdin is not None:
        feeders.append(asyncio.create_task(_pump_stdin(channels.stdin, process)))
    if channels.resize is not None:
        feeders.append(asyncio.create_task(_pump_resize(channels.resize, process)))
    try:
        await _pump_output(process, channels)
        return await process.wait_exit()
    finally:
        for feeder in feeders:
            feeder.cancel()
        for result in await asyncio.gather(*feeders, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("input pump failed", error=repr(result))


async def _pump_output(process: ProcessStream, channels: Channels) -> None:
    sinks = {STDOUT: channels.stdout, STDERR: channels.stderr}
    while (item := await process.read()) is not None:
        fd, data = item
        sink = sinks.get(fd)
        if sink is not None and data:
            await sink.write(data)
    for sink in sinks.values():
        if sink is not None:
            await sink.close()


async def _pump_stdin(source: InputChannel, process: ProcessStream) -> None:
    writable = True
    while chunk := await source.read():
        if not writable:
            continue  # keep draining so the transport never stalls on this channel
        try:
            await process.write_stdin(chunk)
        except OSError as exc:
            log.debug("stdin no longer accepted", error=str(exc))
            writable = False
    try:
        await process.close_stdin()
    except OSError as exc:
        log.debug("closing stdin failed", error=str(exc))


async def _pump_resize(source: InputChannel, process: ProcessStream) -> None:
    decoder = ResizeDecoder()
    while chunk := await source.read():
        try:
            sizes = decoder.feed(chunk)
        except ValueError as exc:
            log.warning("bad terminal resize message", error=str(exc))
            continue
        for width, height in sizes:
            try:
                await process.resize(width, height)
            except OSError as exc:
                log.debug("terminal resize failed", error=str(exc))


async def _finish(channels: Channels, outcome: Outcome, style: StatusStyle) -> None:
    message = encode_status(outcome, style)
    try:
        if message:
            await channels.error.write(message)
    finally:
        await channels.error.close()


# ---------------------------------------------------------------- encodings


def encode_status(outcome: Outcome, style: StatusStyle) -> bytes:
    """The bytes to write on the error channel for `outcome` (b"" for none)."""
    status = status_object(outcome)
    if style is StatusStyle.JSON:
        return json.dumps(status, separators=(",", ":")).encode()
    if status["status"] == "Success":
        return b""
    return str(status["message"]).encode()


def status_object(outcome: Outcome) -> dict[str, Any]:
    """The metav1.Status for an outcome, as kubelet's streaming server shapes it."""
    if outcome.error is not None:
        return {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {outcome.error}",
            "reason": "InternalError",
            "details": {"causes": [{"message": outcome.error}]},
            "code": 500,
        }
    if outcome.exit_code is not None:
        code = outcome.exit_code
        return {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    return {"metadata": {}, "status": "Success"}


class ResizeDecoder:
    """Splits a byte stream of concatenated `{"Width":w,"Height":h}` objects."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        """Return the sizes completed by `data`; raise ValueError on garbage."""
        self._text += self._utf8.decode(data)
        sizes: list[tuple[int, int]] = []
        while text := self._text.lstrip():
            try:
                obj, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                return self._incomplete(text, sizes)
            self._text = text[end:]
            sizes.append(_size_of(obj))
        self._text = ""
        return sizes

    def _incomplete(self, text: str, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if len(text) > _MAX_RESIZE_BUFFER or not text.startswith("{"):
            self._text = ""
            raise ValueError(f"not a terminal size: {text[:64]!r}")
        self._text = text
        return sizes


def _size_of(obj: object) -> tuple[int, int]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"terminal size is not an object: {obj!r}")
    width, height = obj.get("Width", 0), obj.get("Height", 0)
    if not isinstance(width, int) or not isinstance(height, int) or width < 0 or height < 0:
        raise ValueError(f"bad terminal size {obj!r}")
    return width, height


# ---------------------------------------------------------------- SPDY stream setup

S = TypeVar("S", bound="HeaderedStream")


class HeaderedStream(InputChannel, OutputChannel, Protocol):
    """A client-opened stream that says what it is for in its headers."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The stream's SYN_STREAM headers; `streamtype` names its role."""
        ...

    async def abort(self) -> None:
        """Reset the stream: we will neither read nor write it."""
        ...


class StreamCreationTimeout(Exception):
    """The client did not open all the streams it asked for in time."""


def expected_stream_types(options: Options, version: int) -> frozenset[str]:
    """The stream types a client opens for `options` under protocol `version`."""
    wanted = {"error"}
    wanted |= {name for name, on in (("stdin", options.stdin), ("stdout", options.stdout)) if on}
    if options.stderr and not options.tty:
        wanted.add("stderr")
    if options.tty and version >= 3:
        wanted.add("resize")
    return frozenset(wanted)


async def collect_streams(
    accept: Callable[[], Awaitable[S | None]],
    expected: frozenset[str],
    creation_timeout: float = STREAM_CREATION_TIMEOUT,
) -> dict[str, S]:
    """Accept streams until one of each expected type arrived; by type.

    Raises StreamCreationTimeout after `creation_timeout` seconds, ConnectionError if the
    connection ends first. Streams of unknown types are reset: unread, they
    would fill their buffer and stall the connection.
    """
    found: dict[str, S] = {}
    try:
        async with asyncio.timeout(creation_timeout):
            while not expected <= found.keys():
                stream = await accept()
                if stream is None:
                    raise ConnectionError("connection closed while waiting for streams")
                kind = stream.headers.get(STREAM_TYPE_HEADER, "")
                if kind not in ("error", "stdin", "stdout", "stderr", "resize"):
                    log.warning("unexpected stream type", stream_type=kind)
                    await stream.abort()
                    continue
                found[kind] = stream
    except TimeoutError:
        missing = sorted(expected - found.keys())
        raise StreamCreationTimeout(f"timed out waiting for streams {missing}") from None
    return found


def channels_from_streams(streams: Mapping[str, HeaderedStream]) -> Channels:
    """Map typed SPDY streams onto session channels."""
    return Channels(
        error=streams["error"],
        stdin=streams.get("stdin"),
        stdout=streams.get("stdout"),
        stderr=streams.get("stderr"),
        resize=streams.get("resize"),
    )
