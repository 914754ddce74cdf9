"""Processes exec'd into the running container: exec_sync and exec_stream.

Every exec is `runc exec --detach --process <json> --pid-file <f>`: runc
exits as soon as the process runs, the process is re-parented to the shim
(child subreaper) and reaped by it. So no runc (~10 MB each) stays around
per exec, and tty and pipe execs work alike (runc only accepts a console
socket when detaching). The process spec is the container's own
`process` from config.json with args, terminal, cwd and extra env replaced.

After the process exits, its output is drained for at most DRAIN_TIMEOUT
seconds: a background child it left in the container may hold the pipes
open forever. exec_sync keeps at most `max_output` bytes per stream but
reads everything, so the process never blocks on a full pipe and the exit
code is never lost. exec_stream kills the process when the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shim import api, errors, fdio, procs, runtime, stdio, streams

DRAIN_TIMEOUT = 2.0


def process_spec(
    base: dict[str, Any], *, args: Sequence[str], env: Sequence[str], cwd: str, tty: bool
) -> dict[str, Any]:
    """The container's process spec with an exec's overrides.

    `env` entries replace the container's entries of the same name and add
    new ones; user, capabilities, rlimits, apparmor... stay as configured.
    """
    spec = dict(base)
    spec["args"] = list(args)
    spec["terminal"] = tty
    spec.pop("consoleSize", None)
    if cwd:
        spec["cwd"] = cwd
    if env:
        merged = {e.partition("=")[0]: e for e in spec.get("env", [])}
        merged.update({e.partition("=")[0]: e for e in env})
        spec["env"] = list(merged.values())
    return spec


@dataclass(kw_only=True, eq=False)
class ExecProcess:
    """A started exec: its pid, exit future and the shim's ends of its stdio."""

    pid: int
    exited: asyncio.Future[int]
    stdin: fdio.FdWriter | None = None
    outputs: list[tuple[int, int]] = field(default_factory=list)  # (fd, channel)
    master: int | None = None

    def close(self) -> None:
        if self.stdin is not None:
            self.stdin.abort()
            self.stdin = None
        for fd, _ in self.outputs:
            os.close(fd)
        self.outputs.clear()
        self.master = None

    async def kill(self) -> int:
        return await procs.kill_and_wait(self.exited, self.pid)


class Execs:
    """Starts processes in one container."""

    def __init__(
        self, *, rt: runtime.Runtime, reaper: procs.Reaper, state_dir: Path, base: dict[str, Any]
    ) -> None:
        self._rt = rt
        self._reaper = reaper
        self._dir = state_dir
        self._base = base
        self._seq = itertools.count()
        self._running: set[ExecProcess] = set()

    async def start(
        self,
        *,
        args: Sequence[str],
        env: Sequence[str] = (),
        cwd: str = "",
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
    ) -> ExecProcess:
        if not args:
            raise errors.InvalidArgument(f"exec in container {self._rt.container_id}: no command")
        n = next(self._seq)
        spec_file = self._dir / f"exec-{n}.json"
        pid_file = self._dir / f"exec-{n}.pid"
        spec = process_spec(self._base, args=args, env=env, cwd=cwd, tty=tty)
        spec_file.write_text(json.dumps(spec))
        try:
            if tty:
                return await self._start_tty(spec_file, pid_file, n, stdin=stdin)
            return await self._start_pipes(spec_file, pid_file, stdin, stdout, stderr)
        finally:
            spec_file.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)

    async def _start_pipes(
        self, spec_file: Path, pid_file: Path, stdin: bool, stdout: bool, stderr: bool
    ) -> ExecProcess:
        child: list[int] = []
        proc = ExecProcess(pid=0, exited=asyncio.get_running_loop().create_future())
        try:
            fds: list[int | None] = [None, None, None]
            if stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                child.append(r)
                fds[0] = r
                proc.stdin = fdio.FdWriter(w)
            for i, (wanted, channel) in enumerate(
                ((stdout, api.CH_STDOUT), (stderr, api.CH_STDERR))
            ):
                if wanted:
                    r, w = fdio.pipe()
                    proc.outputs.append((r, channel))
                    child.append(w)
                    fds[i + 1] = w
            io = runtime.Stdio(stdin=fds[0], stdout=fds[1], stderr=fds[2])
            await self._rt.exec_detached(spec_file, pid_file, io, None)
        except BaseException:
            proc.close()
            raise
        finally:
            for fd in child:
                os.close(fd)
        return self._adopt(proc, pid_file)

    async def _start_tty(self, spec_file: Path, pid_file: Path, n: int, stdin: bool) -> ExecProcess:
        console = stdio.ConsoleSocket(self._dir / f"console-{n}.sock")
        try:
            receiving = asyncio.get_running_loop().create_task(console.receive())
            try:
                await self._rt.exec_detached(spec_file, pid_file, runtime.Stdio(), console.name)
                async with asyncio.timeout(10):
                    master = await receiving
            finally:
                receiving.cancel()
        finally:
            console.close()
        os.set_blocking(master, False)
        proc = ExecProcess(pid=0, exited=asyncio.get_running_loop().create_future(), master=master)
        proc.outputs.append((master, api.CH_STDOUT))
        proc.stdin = fdio.FdWriter(os.dup(master)) if stdin else None
        return self._adopt(proc, pid_file)

    def _adopt(self, proc: ExecProcess, pid_file: Path) -> ExecProcess:
        try:
            proc.pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as e:
            proc.close()
            raise errors.Unavailable(
                f"exec in container {self._rt.container_id}: no pid from runtime: {e}"
            ) from None
        proc.exited = self._reaper.watch_adopted(proc.pid)
        self._running.add(proc)
        proc.exited.add_done_callback(lambda _: self._running.discard(proc))
        return proc

    async def kill_all(self) -> None:
        """Kill every exec still running (the container is going away)."""
        await asyncio.gather(*(p.kill() for p in list(self._running)))

    async def run_sync(self, p: api.ExecSyncParams) -> api.ExecSyncResult:
        proc = await self.start(args=p.args, env=p.env, cwd=p.cwd)
        loop = asyncio.get_running_loop()
        readers = [loop.create_task(fdio.read_all(fd, p.max_output)) for fd, _ in proc.outputs]
        timeout = p.timeout if p.timeout is not None and p.timeout > 0 else None
        timed_out = False
        try:
            status = await procs.wait(proc.exited, proc.pid, timeout)
        except TimeoutError:
            status, timed_out = await proc.exited, True
        try:
            await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
        finally:
            for r in readers:
                r.cancel()
            out = [r.result()[0] if r.done() and not r.cancelled() else b"" for r in readers]
            proc.close()
        return api.ExecSyncResult(
            stdout=out[0], stderr=out[1], exit_code=procs.exit_code_of(status), timed_out=timed_out
        )

    async def serve_stream(self, proc: ExecProcess, conn: streams.StreamConn) -> None:
        """Pump one interactive exec until it exits (or the client leaves: then kill it)."""
        loop = asyncio.get_running_loop()
        pumps = [loop.create_task(_pump(fd, ch, conn)) for fd, ch in proc.outputs]
        reading = loop.create_task(conn.input(*_input_handlers(proc)))
        try:
            waiting: set[asyncio.Future[Any]] = {reading, proc.exited}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not proc.exited.done():
                await proc.kill()  # the client went away
            if pumps:
                await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT)
            await conn.finish(procs.exit_code_of(proc.exited.result()))
        finally:
            for task in (*pumps, reading):
                task.cancel()
            await asyncio.gather(*pumps, reading, return_exceptions=True)
            if not proc.exited.done():
                await proc.kill()
            proc.close()
            await conn.close()


async def _pump(fd: int, channel: int, conn: streams.StreamConn) -> None:
    while data := await fdio.read_some(fd):
        await conn.send_wait(channel, data)


def _input_handlers(proc: ExecProcess) -> tuple[Any, Any, Any]:
    async def on_stdin(data: bytes) -> None:
        if proc.stdin is not None:
            proc.stdin.write(data)
            await proc.stdin.drain()

    def on_close() -> None:
        if proc.stdin is not None:
            proc.stdin.close()
            proc.stdin = None

    def on_resize(width: int, height: int) -> None:
        if proc.master is not None:
            with contextlib.suppress(OSError):
                stdio.resize(proc.master, width, height)

    return on_stdin, on_close, on_resize
