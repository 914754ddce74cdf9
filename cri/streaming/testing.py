"""A StreamingBackend that runs commands as local processes: a fake for tests.

No containers: `exec` runs `req.cmd` on this machine (pipes, or a pty for TTY
requests), `attach` starts the command registered for the container id, and
`port_forward` dials the port on a local address instead of inside a pod. The
processes are real, so tests see real exit codes, stdin EOF, terminal sizes and
kills; every process gets its own session so `close()` kills its whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from cri import errors
from cri.api.v1 import api_pb2
from cri.streaming.api import STDERR, STDOUT

_CHUNK = 64 * 1024
_QUEUE_DEPTH = 8
_EOF_OF_TTY = b"\x04"


class LocalProcess:
    """A ProcessStream over a local child process."""

    def __init__(self, proc: asyncio.subprocess.Process, backend: LocalBackend) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._backend = backend
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(_QUEUE_DEPTH)
        self._open_outputs = 0
        self._readers: list[asyncio.Task[None]] = []
        self._stdin: asyncio.StreamWriter | None = None
        self._tty_fd: int | None = None
        self._tty_transport: asyncio.BaseTransport | None = None
        self._closed = False

    def _start_reader(self, fd: int, stream: asyncio.StreamReader) -> None:
        self._open_outputs += 1
        self._readers.append(asyncio.create_task(self._pump(fd, stream)))

    async def _pump(self, fd: int, stream: asyncio.StreamReader) -> None:
        try:
            while chunk := await stream.read(_CHUNK):
                await self._output.put((fd, chunk))
        except OSError:
            pass  # EIO: the pty's last slave closed — that is EOF for a terminal
        await self._output.put(None)

    async def write_stdin(self, data: bytes) -> None:
        if self._tty_fd is not None:
            await _write_fd(self._tty_fd, data)
            return
        if self._stdin is None:
            raise BrokenPipeError("stdin was not requested or is closed")
        self._stdin.write(data)
        await self._stdin.drain()

    async def close_stdin(self) -> None:
        if self._tty_fd is not None:
            # A terminal has no half-close; ^D is what a user would type.
            with contextlib.suppress(OSError):
                await _write_fd(self._tty_fd, _EOF_OF_TTY)
            return
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None

    async def resize(self, width: int, height: int) -> None:
        if self._tty_fd is not None:
            fcntl.ioctl(self._tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self._backend.resizes.put_nowait((width, height))

    async def read(self) -> tuple[int, bytes] | None:
        while self._open_outputs:
            item = await self._output.get()
            if item is not None:
                return item
            self._open_outputs -= 1
        return None

    async def wait_exit(self) -> int:
        code = await self.proc.wait()
        return 128 - code if code < 0 else code

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Everything that needs no waiting first, so a cancellation cannot leak it.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for task in self._readers:
            task.cancel()
        if self._stdin is not None:
            self._stdin.close()
        if self._tty_transport is not None:
            self._tty_transport.close()
        if self._tty_fd is not None:
            os.close(self._tty_fd)
            self._tty_fd = None
        await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._backend.closed.append(self.pid)
        self._backend.closings.put_nowait(self.pid)


class LocalBackend:
    """StreamingBackend over local processes and local TCP ports (see module doc).

    `started` and `closed` list process ids; `closings` queues each id as its
    process is closed and `resizes` every terminal size applied, so tests can wait
    for effects instead of sleeping.
    """

    def __init__(
        self,
        *,
        attach_commands: Mapping[str, Sequence[str]] | None = None,
        port_host: str = "127.0.0.1",
    ) -> None:
        self._attach = dict(attach_commands or {})
        self._host = port_host
        self.started: list[int] = []
        self.closed: list[int] = []
        self.closings: asyncio.Queue[int] = asyncio.Queue()
        self.resizes: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self.forwarded: list[tuple[str, int]] = []

    async def exec(self, req: api_pb2.ExecRequest) -> LocalProcess:
        return await self._spawn(list(req.cmd), req)

    async def attach(self, req: api_pb2.AttachRequest) -> LocalProcess:
        argv = self._attach.get(req.container_id)
        if argv is None:
            raise errors.NotFound(f"container {req.container_id} not found")
        return await self._spawn(list(argv), req)

    async def port_forward(
        self, pod_sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.forwarded.append((pod_sandbox_id, port))
        return await asyncio.open_connection(self._host, port)

    async def _spawn(
        self, argv: list[str], req: api_pb2.ExecRequest | api_pb2.AttachRequest
    ) -> LocalProcess:
        if req.tty:
            process = await _spawn_tty(argv, self)
        else:
            process = await _spawn_pipes(argv, req, self)
        self.started.append(process.pid)
        return process


async def _spawn_pipes(
    argv: list[str], req: api_pb2.ExecRequest | api_pb2.AttachRequest, backend: LocalBackend
) -> LocalProcess:
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=pipe if req.stdin else null,
        stdout=pipe if req.stdout else null,
        stderr=pipe if req.stderr else null,
        start_new_session=True,
    )
    process = LocalProcess(proc, backend)
    process._stdin = proc.stdin
    for fd, stream in ((STDOUT, proc.stdout), (STDERR, proc.stderr)):
        if stream is not None:
            process._start_reader(fd, stream)
    return process


async def _spawn_tty(argv: list[str], backend: LocalBackend) -> LocalProcess:
    master, slave = os.openpty()
    try:
        # setsid -c: a new session whose controlling terminal is the pty, so the
        # child gets SIGWINCH and job control like under a real terminal.
        proc = await asyncio.create_subprocess_exec(
            "setsid", "-c", *argv, stdin=slave, stdout=slave, stderr=slave
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    reader = asyncio.StreamReader(limit=_CHUNK)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(master), "rb", buffering=0)
    )
    process = LocalProcess(proc, backend)
    process._tty_fd = master
    process._tty_transport = transport
    process._start_reader(STDOUT, reader)
    return process


async def _write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking fd, waiting whenever it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(fd, writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(fd)


# ---------------------------------------------------------------- local TCP servers

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve `handler` on a free loopback port (yielded); on exit end every connection.

    asyncio's Server.close() leaves accepted connections running; this cancels
    their handlers and closes their sockets, so tests leak nothing.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            tasks.discard(task)

    server = await asyncio.start_server(tracked, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TCP echo handler for `tcp_server`: returns what it reads until EOF."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
