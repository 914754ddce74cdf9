"""Exec/attach session logic against in-memory channels and a fake process."""

from __future__ import annotations

import asyncio
import json

import pytest

from cri.api.v1 import api_pb2
from cri.streaming import remotecommand as rc
from cri.streaming.api import STDERR, STDOUT


class MemoryInput:
    """A client→server channel fed by the test; b"" after `end()`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def send(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def end(self) -> None:
        self.queue.put_nowait(b"")

    async def read(self) -> bytes:
        chunk = await self.queue.get()
        if not chunk:
            self.queue.put_nowait(b"")
        return chunk


class MemoryOutput:
    def __init__(self, *, broken: bool = False) -> None:
        self.data = b""
        self.closed = False
        self.broken = broken

    async def write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("client went away")
        self.data += data

    async def close(self) -> None:
        self.closed = True


class FakeProcess:
    """Echoes stdin to stdout; exits with `code` once stdin is closed."""

    def __init__(self, code: int = 0, output: list[tuple[int, bytes] | None] | None = None) -> None:
        self.code = code
        self.output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        for item in output or []:
            self.output.put_nowait(item)
        self.stdin = b""
        self.stdin_closed = False
        self.sizes: list[tuple[int, int]] = []
        self.fed = asyncio.Event()
        self.closed = False
        self.exited = asyncio.Event()

    async def write_stdin(self, data: bytes) -> None:
        self.stdin += data
        self.fed.set()
        await self.output.put((STDOUT, data.upper()))

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        await self.output.put(None)
        self.exited.set()

    async def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))
        self.fed.set()

    async def read(self) -> tuple[int, bytes] | None:
        return await self.output.get()

    async def wait_exit(self) -> int:
        await self.exited.wait()
        return self.code

    async def close(self) -> None:
        self.closed = True


async def test_stdin_is_pumped_and_its_eof_closes_the_process_stdin() -> None:
    process, stdin, stdout, error = FakeProcess(), MemoryInput(), MemoryOutput(), MemoryOutput()
    stdin.send(b"hello ")
    stdin.send(b"world")
    stdin.end()

    async def start() -> FakeProcess:
        return process

    outcome = await rc.serve(
        rc.Channels(error=error, stdin=stdin, stdout=stdout),
        start,
        style=rc.StatusStyle.JSON,
        report_exit_code=True,
    )
    assert (process.stdin, stdout.data, process.stdin_closed) == (
        b"hello world",
        b"HELLO WORLD",
        True,
    )
    assert stdout.closed and error.closed and process.closed
    assert outcome == rc.Outcome()
    assert json.loads(error.data) == {"metadata": {}, "status": "Success"}


async def test_output_goes_to_its_channel_and_the_exit_code_to_the_error_channel() -> None:
    process = FakeProcess(code=3, output=[(STDOUT, b"out"), (STDERR, b"err"), (STDOUT, b"!"), None])
    process.exited.set()
    stdout, stderr, error = MemoryOutput(), MemoryOutput(), MemoryOutput()

    async def start() -> FakeProcess:
        return process

    await rc.serve(
        rc.Channels(error=error, stdout=stdout, stderr=stderr),
        start,
        style=rc.StatusStyle.JSON,
        report_exit_code=True,
    )
    assert (stdout.data, stderr.data) == (b"out!", b"err")
    status = json.loads(error.data)
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_attach_reports_success_whatever_the_exit_code() -> None:
    process = FakeProcess(code=1, output=[None])
    process.exited.set()
    error = MemoryOutput()

    async def start() -> FakeProcess:
        return process

    await rc.serve(
        rc.Channels(error=error), start, style=rc.StatusStyle.JSON, report_exit_code=False
    )
    assert json.loads(error.data)["status"] == "Success"


async def test_backend_failure_is_an_internal_error_status() -> None:
    error = MemoryOutput()

    async def start() -> FakeProcess:
        raise OSError("container c1 is not running")

    outcome = await rc.serve(
        rc.Channels(error=error), start, style=rc.StatusStyle.JSON, report_exit_code=True
    )
    status = json.loads(error.data)
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert "container c1 is not running" in status["message"]
    assert outcome.error == "container c1 is not running"


async def test_text_style_sends_nothing_on_success_and_the_message_on_failure() -> None:
    assert rc.encode_status(rc.Outcome(), rc.StatusStyle.TEXT) == b""
    text = rc.encode_status(rc.Outcome(exit_code=2), rc.StatusStyle.TEXT)
    assert text == b"command terminated with non-zero exit code: exit status 2"


async def test_client_gone_closes_the_backend_and_propagates() -> None:
    process = FakeProcess(output=[(STDOUT, b"data")])

    async def start() -> FakeProcess:
        return process

    with pytest.raises(ConnectionResetError):
        await rc.serve(
            rc.Channels(error=MemoryOutput(), stdout=MemoryOutput(broken=True)),
            start,
            style=rc.StatusStyle.JSON,
            report_exit_code=True,
        )
    assert process.closed


async def test_cancellation_closes_the_backend() -> None:
    process, stdin = FakeProcess(), MemoryInput()

    async def start() -> FakeProcess:
        return process

    task = asyncio.create_task(
        rc.serve(
            rc.Channels(error=MemoryOutput(), stdin=stdin),
            start,
            style=rc.StatusStyle.JSON,
            report_exit_code=True,
        )
    )
    stdin.send(b"x")
    await process.fed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert process.closed


async def test_resize_messages_reach_the_process() -> None:
    process, resize, stdin = FakeProcess(), MemoryInput(), MemoryInput()
    resize.send(b'{"Width":80,"Height":24}\n{"Width":')
    resize.send(b'100,"Height":50}')

    async def start() -> FakeProcess:
        return process

    task = asyncio.create_task(
        rc.serve(
            rc.Channels(error=MemoryOutput(), stdin=stdin, resize=resize),
            start,
            style=rc.StatusStyle.JSON,
            report_exit_code=True,
        )
    )
    await process.fed.wait()  # both sizes come from one chunk, applied in one go
    stdin.end()
    await task
    assert process.sizes == [(80, 24), (100, 50)]


def test_resize_decoder_handles_split_and_concatenated_objects() -> None:
    decoder = rc.ResizeDecoder()
    assert decoder.feed(b' {"Width":1,"Hei') == []
    assert decoder.feed(b'ght":2}{"Width":3,"Height":4}\n') == [(1, 2), (3, 4)]


def test_resize_decoder_rejects_garbage() -> None:
    decoder = rc.ResizeDecoder()
    with pytest.raises(ValueError):
        decoder.feed(b"not json")
    with pytest.raises(ValueError):
        decoder.feed(b'{"Width":-1,"Height":2}')
    assert decoder.feed(b'{"Width":5,"Height":6}') == [(5, 6)]


@pytest.mark.parametrize(
    ("options", "version", "expected"),
    [
        (
            rc.Options(stdin=True, stdout=True, stderr=True, tty=False),
            4,
            {"error", "stdin", "stdout", "stderr"},
        ),
        (
            rc.Options(stdin=True, stdout=True, stderr=False, tty=True),
            4,
            {"error", "stdin", "stdout", "resize"},
        ),
        (
            rc.Options(stdin=True, stdout=True, stderr=False, tty=True),
            2,
            {"error", "stdin", "stdout"},
        ),
        (rc.Options(stdin=False, stdout=False, stderr=True, tty=False), 1, {"error", "stderr"}),
    ],
)
def test_expected_streams_follow_the_request_and_version(
    options: rc.Options, version: int, expected: set[str]
) -> None:
    assert rc.expected_stream_types(options, version) == expected


def test_protocol_versions() -> None:
    assert [rc.protocol_version(p) for p in rc.SPDY_PROTOCOLS] == [4, 3, 2, 1]
    assert rc.protocol_version("v5.channel.k8s.io") == 5
    assert rc.status_style(4) is rc.StatusStyle.JSON and rc.status_style(3) is rc.StatusStyle.TEXT


def test_options_follow_the_cri_request() -> None:
    req = api_pb2.ExecRequest(stdin=True, tty=True, stdout=True)
    assert rc.Options.of(req) == rc.Options(stdin=True, stdout=True, stderr=False, tty=True)


class Headed(MemoryInput, MemoryOutput):
    def __init__(self, kind: str) -> None:
        MemoryInput.__init__(self)
        MemoryOutput.__init__(self)
        self.headers = {"streamtype": kind}
        self.aborted = False

    async def abort(self) -> None:
        self.aborted = True


async def test_collect_streams_waits_for_each_expected_type() -> None:
    arriving: asyncio.Queue[Headed | None] = asyncio.Queue()
    bogus = Headed("bogus")
    for stream in (Headed("stdout"), bogus, Headed("error")):
        arriving.put_nowait(stream)
    found: dict[str, Headed] = await rc.collect_streams(
        arriving.get, frozenset({"error", "stdout"}), creation_timeout=5
    )
    assert sorted(found) == ["error", "stdout"]
    assert bogus.aborted


async def test_collect_streams_times_out_naming_the_missing_streams() -> None:
    arriving: asyncio.Queue[Headed | None] = asyncio.Queue()
    arriving.put_nowait(Headed("error"))
    with pytest.raises(rc.StreamCreationTimeout, match="stdin"):
        await rc.collect_streams(arriving.get, frozenset({"error", "stdin"}), creation_timeout=0.05)


async def test_collect_streams_fails_when_the_connection_ends() -> None:
    arriving: asyncio.Queue[Headed | None] = asyncio.Queue()
    arriving.put_nowait(None)
    with pytest.raises(ConnectionError):
        await rc.collect_streams(arriving.get, frozenset({"error"}))
