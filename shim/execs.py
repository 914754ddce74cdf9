"""Processes exec'd into the running container: exec_sync and exec_stream.

Every exec is `runc exec --detach --process <json> --pid-file <f>`: runc
exits as soon as the process runs, the process is re-parented to the keeper's
worker that started it (a child subreaper) and reaped by it. So no runc (~10 MB each) stays around
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
import signal
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
        n = f"{os.getpid()}-{next(self._seq)}"
        spec = process_spec(self._base, args=args, env=env, cwd=cwd, tty=tty)
        spec_file, pid_file = _write_spec(self._rt.container_id, self._dir, n, spec)
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

    async def _start_tty(self, spec_file: Path, pid_file: Path, n: str, stdin: bool) -> ExecProcess:
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
            proc.pid = _read_pid(self._rt.container_id, pid_file)
        except BaseException:
            proc.close()
            raise
        proc.exited = self._reaper.watch_adopted(proc.pid)
        self._running.add(proc)
        proc.exited.add_done_callback(lambda _: self._running.discard(proc))
        return proc

    def signal_all(self, sig: int) -> None:
        """Signal every exec still running (the container is going away)."""
        for proc in list(self._running):
            if not proc.exited.done():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

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


async def run_sync_blocking(
    rt: runtime.Runtime, state_dir: Path, base: dict[str, Any], p: api.ExecSyncParams
) -> api.ExecSyncResult:
    """ExecSync: run to completion, in a worker without an event loop (never suspends).

    `rt` must be blocking (no reaper) and the calling process a child
    subreaper, as the exec'd process is re-parented to it; SIGTERM kills that
    process (the container is being deleted).
    """
    spec = process_spec(base, args=p.args, env=p.env, cwd=p.cwd, tty=False)
    spec_file, pid_file = _write_spec(rt.container_id, state_dir, str(os.getpid()), spec)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            await rt.exec_detached(
                spec_file, pid_file, runtime.Stdio(stdout=out_w, stderr=err_w), None
            )
        finally:
            os.close(out_w)
            os.close(err_w)
        pid = _read_pid(rt.container_id, pid_file)
        signal.signal(signal.SIGTERM, lambda *_: _kill_quietly(pid))
        timeout = p.timeout if p.timeout is not None and p.timeout > 0 else None
        got = procs.collect_blocking(
            pid, [out_r, err_r], seconds=timeout, limit=p.max_output, drain=DRAIN_TIMEOUT
        )
    finally:
        os.close(out_r)
        os.close(err_r)
        spec_file.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
    return api.ExecSyncResult(
        stdout=got.outputs[0],
        stderr=got.outputs[1],
        exit_code=procs.exit_code_of(got.status),
        timed_out=got.timed_out,
    )


def _write_spec(
    container_id: str, state_dir: Path, n: str, spec: dict[str, Any]
) -> tuple[Path, Path]:
    """The process spec file of exec `n` and the name of its pid file.

    `n` starts with the pid, which keeps concurrent workers' execs apart.
    """
    if not spec["args"]:
        raise errors.InvalidArgument(f"exec in container {container_id}: no command")
    spec_file = state_dir / f"exec-{n}.json"
    spec_file.write_text(json.dumps(spec))
    return spec_file, state_dir / f"exec-{n}.pid"


def _read_pid(container_id: str, pid_file: Path) -> int:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError) as e:
        raise errors.Unavailable(
            f"exec in container {container_id}: no pid from runtime: {e}"
        ) from None


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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
