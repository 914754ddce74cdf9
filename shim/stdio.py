"""The container's stdio: pipes or a pty, the CRI log, and attach fan-out.

Without a tty the container gets three pipes (stdin only if asked for,
/dev/null otherwise); the shim keeps the far ends. With a tty the runtime
creates the pty and sends the master over a console socket (SCM_RIGHTS);
everything the container writes arrives on the master and is logged as
"stdout".

Output is read as it comes and goes, in this order, to the log writer and to
every attached stream. A slow attacher never slows the container: its own
buffer grows until it is dropped (see shim.attach). Stdin written by
attachers goes to one buffered writer; with `stdin_once` the container's
stdin is closed when the first attacher that had stdin detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import termios
from pathlib import Path
from typing import Protocol

from shim import api, fdio, logger, runtime, state


class Attached(Protocol):
    """An attached stream (shim.attach.Attachment)."""

    def send(self, channel: int, data: bytes) -> None: ...


class ConsoleSocket:
    """A listening socket on which the runtime hands over a pty master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = contextlib.ExitStack()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The name must be usable by the runtime process, hence our pid.
            self.name = self._stack.enter_context(state.socket_path(path, os.getpid()))
            state.remove_quietly(path)
            self._sock.bind(self.name)
            self._sock.listen(1)
            self._sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    async def receive(self) -> int:
        """Accept the runtime's connection and return the master fd it sends."""
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        with conn:
            while True:
                try:
                    _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
                    break
                except BlockingIOError:
                    await fdio.wait_readable(conn.fileno())
        if not fds:
            raise OSError("console socket: no descriptor received")
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        state.remove_quietly(self.path)
        self._stack.close()


def resize(fd: int, width: int, height: int) -> None:
    """Set a pty's window size (ignored when out of range)."""
    if 0 < width < 65536 and 0 < height < 65536:
        termios.tcsetwinsize(fd, (height, width))


class ContainerIO:
    """Owns the shim's ends of the container's stdio and the pumps that read them."""

    def __init__(self, *, tty: bool, stdin: bool, stdin_once: bool, log: logger.LogWriter | None):
        self.tty = tty
        self.log = log
        self._stdin_once = stdin_once
        self._child: list[int] = []  # ends the runtime inherits; closed after create
        self._outputs: list[tuple[int, str]] = []  # (read fd, stream name)
        self._stdin: fdio.FdWriter | None = None
        self._stdin_r: int | None = None
        self._master: int | None = None
        self._attached: set[Attached] = set()
        self._pumps: list[asyncio.Task[None]] = []
        if not tty:
            self._make_pipes(stdin)

    def _make_pipes(self, stdin: bool) -> None:
        for name in ("stdout", "stderr"):
            r, w = fdio.pipe()
            self._outputs.append((r, name))
            self._child.append(w)
        if stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            self._stdin_r = r
            self._child.append(r)
            self._stdin = fdio.FdWriter(w)

    def child_stdio(self) -> runtime.Stdio:
        """What the runtime's `create` gets as 0, 1, 2 (the pty replaces them with a tty)."""
        if self.tty:
            return runtime.Stdio()
        return runtime.Stdio(stdin=self._stdin_r, stdout=self._child[0], stderr=self._child[1])

    def close_child_ends(self) -> None:
        """After spawning the runtime: only the container may hold these, or EOF never comes."""
        for fd in self._child:
            os.close(fd)
        self._child.clear()

    def set_master(self, fd: int) -> None:
        self._master = fd
        os.set_blocking(fd, False)
        self._outputs.append((fd, "stdout"))
        self._stdin = fdio.FdWriter(os.dup(fd))

    def start(self) -> None:
        """Start reading the container's output."""
        for fd, name in self._outputs:
            self._pumps.append(asyncio.get_running_loop().create_task(self._pump(fd, name)))

    async def _pump(self, fd: int, stream: str) -> None:
        channel = api.CH_STDERR if stream == "stderr" else api.CH_STDOUT
        while data := await fdio.read_some(fd):
            if self.log is not None:
                self.log.write(stream, data)
            for att in list(self._attached):
                att.send(channel, data)
        if self.log is not None:
            self.log.finish(stream)

    async def drain(self, seconds: float) -> None:
        """Wait (at most `seconds`) until every output reached end of stream."""
        if self._pumps:
            await asyncio.wait(self._pumps, timeout=seconds)

    # -- attach ---------------------------------------------------------------

    def attach(self, att: Attached) -> None:
        self._attached.add(att)

    def detach(self, att: Attached) -> None:
        self._attached.discard(att)

    def release_stdin(self) -> None:
        """An attacher is done with stdin; with stdin_once that closes the container's."""
        if self._stdin_once:
            self.close_stdin()

    def attached(self) -> list[Attached]:
        return list(self._attached)

    @property
    def has_stdin(self) -> bool:
        return self._stdin is not None

    def write_stdin(self, data: bytes) -> None:
        if self._stdin is not None:
            self._stdin.write(data)

    async def stdin_drain(self) -> None:
        if self._stdin is not None:
            await self._stdin.drain()

    def close_stdin(self) -> None:
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            resize(self._master, width, height)

    # -- teardown -------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the pumps, close every descriptor and the log."""
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._pumps.clear()
        self.close_child_ends()
        if self._stdin is not None:
            self._stdin.abort()
            self._stdin = None
        for fd, _ in self._outputs:
            os.close(fd)
        self._outputs.clear()
        self._master = None
        if self.log is not None:
            self.log.close()
            self.log = None
