"""The container's stdio: pipes or a pty, the CRI log, and attach fan-out.

Without a tty the container gets three pipes (stdin only if asked for,
/dev/null otherwise); the shim keeps the far ends. With a tty the runtime
creates the pty and sends the master over a console socket (SCM_RIGHTS);
everything the container writes arrives on the master and is logged as
"stdout".

The keeper (shim.keeper) holds these ends in a `ContainerIO` and reads the
output as it comes: to the log writer, then to every attachment's feed
(shim.attach). Attach workers write stdin straight to the pipe or the pty;
with `stdin_once` the keeper closes its end of the stdin pipe when the first
attachment that had stdin detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import termios
from pathlib import Path
from typing import TYPE_CHECKING

from shim import errors, fdio, logger, runtime, state

if TYPE_CHECKING:
    from shim import attach


class ConsoleSocket:
    """A listening socket on which the runtime hands over a pty master."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The name must be usable by the runtime process, hence our pid.
            self.name = self._stack.enter_context(state.socket_path(self.path, os.getpid()))
            state.remove_quietly(self.path)
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

    def receive_blocking(self, timeout: float) -> int:
        """The master fd, when the runtime has already connected (or does within `timeout`)."""
        self._sock.settimeout(timeout)
        try:
            conn, _ = self._sock.accept()
            with conn:
                conn.settimeout(timeout)
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        except OSError as e:
            raise errors.Unavailable(f"console socket: no pty from the runtime: {e}") from None
        if not fds:
            raise errors.Unavailable("console socket: no descriptor received")
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
    """The keeper's ends of the container's stdio, the log and the attach feeds."""

    def __init__(self, *, tty: bool, stdin: bool, stdin_once: bool, log: logger.LogWriter | None):
        self.tty = tty
        self.log = log
        self.stdin_once = stdin_once
        self.child: list[int] = []  # ends the runtime inherits; closed after create
        self.outputs: dict[int, str] = {}  # read fd -> stream name
        self.stdin: int | None = None  # write end of the stdin pipe
        self.master: int | None = None
        self.feeds: list[attach.Feed] = []
        if not tty:
            self._make_pipes(stdin)

    def _make_pipes(self, stdin: bool) -> None:
        for name in ("stdout", "stderr"):
            r, w = fdio.pipe()
            self.outputs[r] = name
            self.child.append(w)
        if stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.stdin = w
            self.child.insert(0, r)

    def child_stdio(self) -> runtime.Stdio:
        """What the runtime's `create` gets as 0, 1, 2 (the pty replaces them with a tty)."""
        if self.tty:
            return runtime.Stdio()
        if self.stdin is not None:
            return runtime.Stdio(stdin=self.child[0], stdout=self.child[1], stderr=self.child[2])
        return runtime.Stdio(stdout=self.child[0], stderr=self.child[1])

    def close_child_ends(self) -> None:
        """Once the runtime has them: only the container may hold these, or EOF never comes."""
        for fd in self.child:
            os.close(fd)
        self.child.clear()

    def set_master(self, fd: int) -> None:
        self.master = fd
        os.set_blocking(fd, False)
        self.outputs[fd] = "stdout"

    @property
    def stdin_target(self) -> int | None:
        """Where attachers write stdin: the pipe, or the pty master."""
        return self.master if self.tty else self.stdin

    def end_output(self, fd: int) -> None:
        """An output reached end of stream."""
        stream = self.outputs.pop(fd)
        if fd != self.master:
            os.close(fd)
        if self.log is not None and stream not in self.outputs.values():
            self.log.finish(stream)

    def close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def live_feeds(self) -> list[attach.Feed]:
        self.feeds = [f for f in self.feeds if f.fd is not None]
        return self.feeds

    def descriptors(self) -> list[int]:
        """Every descriptor held (a worker closes those it does not need)."""
        fds = [*self.child, *self.outputs, *(f.fd for f in self.feeds if f.fd is not None)]
        fds += [fd for fd in (self.stdin, self.master) if fd is not None]
        if self.log is not None and self.log.fd is not None:
            fds.append(self.log.fd)
        return fds

    def close(self) -> None:
        """Close every descriptor and the log."""
        self.close_child_ends()
        self.close_stdin()
        for fd in list(self.outputs):
            if fd != self.master:
                os.close(fd)
        self.outputs.clear()
        if self.master is not None:
            os.close(self.master)
            self.master = None
        for feed in self.feeds:
            feed.close()
        self.feeds.clear()
        if self.log is not None:
            self.log.close()
            self.log = None
