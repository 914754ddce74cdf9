"""Attach: a client connection joins the container's stdio.

Every attachment gets the container's output from the moment it attaches
(nothing is replayed; the log has the past), may write to the container's
stdin and resize its tty. When the container exits, each attachment gets the
exit frame after the output is drained. Detaching (stdin-close frame or
disconnect) of an attachment that had stdin releases it: with `stdin_once`
the container's stdin is closed then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from shim import api, stdio, streams


class Attachment:
    """One attached connection, filtered to the streams it asked for."""

    def __init__(self, conn: streams.StreamConn, params: api.AttachParams) -> None:
        self._conn = conn
        self._wanted = {api.CH_STDOUT: params.stdout, api.CH_STDERR: params.stderr}

    def send(self, channel: int, data: bytes) -> None:
        if self._wanted.get(channel):
            self._conn.send(channel, data)


async def serve(
    io: stdio.ContainerIO,
    exited: Callable[[], Coroutine[Any, Any, int]],
    params: api.AttachParams,
    conn: streams.StreamConn,
    ready: Callable[[], Awaitable[None]],
) -> None:
    """Run one attachment until the container exits or the client leaves.

    The attachment is registered before `ready()` answers the request, so
    the client sees all output produced after it got the OK.
    """
    att = Attachment(conn, params)
    stdin_open = params.stdin and io.has_stdin

    async def on_stdin(data: bytes) -> None:
        if stdin_open:
            io.write_stdin(data)
            await io.stdin_drain()

    def release() -> None:
        nonlocal stdin_open
        if stdin_open:
            stdin_open = False
            io.release_stdin()

    io.attach(att)
    try:
        await ready()
    except BaseException:
        io.detach(att)
        raise
    loop = asyncio.get_running_loop()
    reading = loop.create_task(conn.input(on_stdin, release, io.resize))
    exiting = loop.create_task(exited())
    try:
        await asyncio.wait({reading, exiting}, return_when=asyncio.FIRST_COMPLETED)
        if exiting.done():
            await conn.finish(exiting.result())
    finally:
        io.detach(att)
        for task in (reading, exiting):
            task.cancel()
        await asyncio.gather(reading, exiting, return_exceptions=True)
        release()
        await conn.close()
