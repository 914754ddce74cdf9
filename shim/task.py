"""The container task of one shim: drives the OCI runtime through the life cycle.

    (none) --create--> created --start--> running --exit--> stopped
                          |                                    |
                          +-------- kill / exit ---------------+--delete--> deleted

The exit monitor: the init's pid comes from the runtime's pid file; the shim
reaps it (it is the child subreaper), drains the output, reads the memory
cgroup's oom_kill counter, writes exit.json durably, and only then reports
the task stopped. `kill` signals the init directly (cheaper than runc kill,
and safe: until the shim reaps it the pid cannot be reused). `delete` kills,
waits, deletes the runtime state (never `delete --force` on a running
container: FLOORS §1), unmounts the rootfs and marks the task deleted so the
server exits after replying.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shim import (
    api,
    attach,
    errors,
    execs,
    exitfile,
    logger,
    mount,
    oom,
    procs,
    runtime,
    state,
    stdio,
    streams,
)

INIT_PID = "init.pid"
CONSOLE = "console.sock"
Ready = Callable[[], Awaitable[None]]
# Output still unread this long after the init exited is given up on.
DRAIN_TIMEOUT = 2.0


class Task:
    """The one container of this shim. Methods raise `shim.errors` kinds."""

    def __init__(self, *, id: str, state_dir: Path, reaper: procs.Reaper) -> None:
        self.id = id
        self.deleted = False
        self._dir = state_dir
        self._reaper = reaper
        self._lock = asyncio.Lock()
        self._params: api.CreateParams | None = None
        self._rt: runtime.Runtime | None = None
        self._io: stdio.ContainerIO | None = None
        self._execs: execs.Execs | None = None
        self._rootfs = ""
        self._pid = 0
        self._cgroup: Path | None = None
        self._oom: oom.Watch | None = None
        self._reaped = False
        self._started = False
        self._started_at = 0
        self._exit: exitfile.ExitStatus | None = None
        self._exited = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None

    # -- create ---------------------------------------------------------------

    async def create(self, p: api.CreateParams) -> api.TaskState:
        async with self._lock:
            if self._params is not None or self.deleted:
                raise errors.AlreadyExists(f"container {self.id} already has a task")
            config = self._load_config(p.bundle)
            self._rootfs = str(Path(p.bundle, config.get("root", {}).get("path", "rootfs")))
            state.write_json(self._dir / state.TASK, self._task_record(p))
            try:
                await self._create(p, config)
            except BaseException:
                await self._undo_create()
                raise
            self._params = p
            return self._snapshot()

    def _load_config(self, bundle: str) -> dict[str, Any]:
        try:
            config = json.loads(Path(bundle, "config.json").read_bytes())
        except (OSError, ValueError) as e:
            raise errors.FailedPrecondition(
                f"container {self.id}: cannot read {bundle}/config.json: {e}"
            ) from None
        if not isinstance(config, dict):
            raise errors.InvalidArgument(f"container {self.id}: config.json is not an object")
        return config

    def _task_record(self, p: api.CreateParams) -> dict[str, Any]:
        return {"id": self.id, "rootfs": self._rootfs, "mounted": bool(p.rootfs_mounts)}

    async def _create(self, p: api.CreateParams, config: dict[str, Any]) -> None:
        if p.rootfs_mounts:
            self._mount(p.rootfs_mounts)
        log = self._open_log(p.log_path)
        self._io = stdio.ContainerIO(tty=p.tty, stdin=p.stdin, stdin_once=p.stdin_once, log=log)
        self._rt = runtime.Runtime(
            container_id=self.id,
            binary=p.runtime,
            root=p.runtime_root,
            options=p.runtime_options,
            state_dir=self._dir,
            reaper=self._reaper,
        )
        await self._run_create(self._rt, self._io, p)
        self._adopt_init()
        base = config.get("process", {})
        self._execs = execs.Execs(rt=self._rt, reaper=self._reaper, state_dir=self._dir, base=base)

    def _mount(self, mounts: tuple[api.Mount, ...]) -> None:
        os.makedirs(self._rootfs, exist_ok=True)
        try:
            mount.mount_all(mounts, self._rootfs)
        except OSError as e:
            raise errors.FailedPrecondition(f"container {self.id}: rootfs mount: {e}") from None

    def _open_log(self, path: str) -> logger.LogWriter | None:
        if not path:
            return None
        try:
            return logger.LogWriter(path)
        except OSError as e:
            raise errors.FailedPrecondition(f"container {self.id}: log file {path}: {e}") from None

    async def _run_create(
        self, rt: runtime.Runtime, io: stdio.ContainerIO, p: api.CreateParams
    ) -> None:
        pid_file = self._dir / INIT_PID
        if not p.tty:
            try:
                await rt.create(p.bundle, pid_file, io.child_stdio(), None)
            finally:
                io.close_child_ends()
            return
        console = stdio.ConsoleSocket(self._dir / CONSOLE)
        receiving = asyncio.get_running_loop().create_task(console.receive())
        try:
            await rt.create(p.bundle, pid_file, io.child_stdio(), console.name)
            async with asyncio.timeout(10):
                io.set_master(await receiving)
        finally:
            receiving.cancel()
            console.close()

    def _adopt_init(self) -> None:
        assert self._io is not None
        try:
            self._pid = int((self._dir / INIT_PID).read_text().strip())
        except (OSError, ValueError) as e:
            raise errors.Unavailable(
                f"container {self.id}: no init pid from runtime: {e}"
            ) from None
        exited = self._reaper.watch_adopted(self._pid)
        self._cgroup = oom.memory_cgroup_of(self._pid)
        self._oom = oom.Watch.of(self._cgroup)
        self._io.start()
        self._monitor = asyncio.get_running_loop().create_task(self._watch_exit(exited))

    async def _undo_create(self) -> None:
        if self._rt is not None:
            with contextlib.suppress(errors.Error):
                await self._rt.delete(force=True)
        if self._io is not None:
            await self._io.aclose()
        self._io = self._rt = None
        self._unmount()
        state.remove_quietly(self._dir / state.TASK)
        state.remove_quietly(self._dir / INIT_PID)

    def _unmount(self) -> None:
        if self._rootfs:
            mount.unmount_all(self._rootfs)

    # -- exit -----------------------------------------------------------------

    async def _watch_exit(self, exited: asyncio.Future[int]) -> None:
        status = await exited
        self._reaped = True
        finished = time.time_ns()
        # Before draining the output: a systemd scope's cgroup goes with its last process.
        if self._oom is not None:
            count: int | None = self._oom.final(sigkilled=_sigkilled(status))
        else:
            count = oom.oom_kill_count(self._cgroup) if self._cgroup is not None else None
        oom_killed = bool(count)
        assert self._io is not None
        await self._io.drain(DRAIN_TIMEOUT)
        record = exitfile.ExitStatus(
            pid=self._pid,
            exit_code=procs.exit_code_of(status),
            started_at_ns=self._started_at if self._started else 0,
            finished_at_ns=finished,
            oom_killed=oom_killed,
            reason=api.REASON_OOM if oom_killed else "",
        )
        # Durable before anyone can learn about it.
        try:
            exitfile.write(self._dir, record)
        except OSError as e:
            # Still report the exit (waiters must not hang), but say it may be lost.
            traceback.print_exc()
            record = dataclasses.replace(record, message=f"exit status not persisted: {e}")
        self._exit = record
        self._exited.set()

    async def _exit_code(self) -> int:
        await self._exited.wait()
        assert self._exit is not None
        return self._exit.exit_code

    # -- queries --------------------------------------------------------------

    def _snapshot(self) -> api.TaskState:
        log_errors = self._io.log.errors if self._io is not None and self._io.log else 0
        if self._exit is not None:
            base = exitfile.to_task_state(self.id, self._exit)
            return dataclasses.replace(base, log_errors=log_errors)
        return api.TaskState(
            id=self.id,
            status=api.RUNNING if self._started else api.CREATED,
            pid=self._pid,
            started_at_ns=self._started_at if self._started else 0,
            log_errors=log_errors,
        )

    def _require(self, *allowed: str) -> api.TaskState:
        if self._params is None:
            raise errors.NotFound(f"container {self.id} has no task")
        snap = self._snapshot()
        if allowed and snap.status not in allowed:
            raise errors.FailedPrecondition(f"container {self.id} is {snap.status}")
        return snap

    async def state(self) -> api.TaskState:
        return self._require()

    async def wait(self, timeout: float | None = None) -> api.TaskState:  # noqa: ASYNC109
        self._require()
        try:
            async with asyncio.timeout(timeout):
                await self._exited.wait()
        except TimeoutError:
            raise errors.DeadlineExceeded(f"container {self.id} still running") from None
        return self._snapshot()

    # -- actions --------------------------------------------------------------

    async def start(self) -> api.TaskState:
        async with self._lock:
            self._require(api.CREATED)
            assert self._rt is not None
            # Taken before `runc start`: the process may exit before it returns.
            self._started_at = time.time_ns()
            self._started = True
            try:
                await self._rt.start()
            except errors.Error:
                self._started = False
                raise
            return self._snapshot()

    async def kill(self, signal: int, all: bool = False) -> None:
        self._require()
        if self._reaped:
            return
        if self._oom is not None:
            self._oom.refresh()  # OOM kills elsewhere in the parent until now are not ours
        if all:
            assert self._rt is not None
            try:
                await self._rt.kill(signal, all=True)
            except errors.FailedPrecondition:
                if not self._reaped:
                    raise
            return
        try:
            os.kill(self._pid, signal)
        except ProcessLookupError:
            pass
        except (OSError, ValueError) as e:
            raise errors.InvalidArgument(f"kill container {self.id}: {e}") from None

    async def delete(self) -> api.TaskState:
        async with self._lock:
            if self._params is None:
                self.deleted = True
                recorded = exitfile.read(self._dir)
                if recorded is not None:
                    return exitfile.to_task_state(self.id, recorded)
                return api.TaskState(id=self.id, status=api.STOPPED)
            if not self._reaped:
                os.kill(self._pid, signal.SIGKILL)
            await self._exited.wait()
            await self._teardown()
            return self._snapshot()

    async def _teardown(self) -> None:
        assert self._rt is not None and self._io is not None and self._execs is not None
        await self._execs.kill_all()
        try:
            await self._rt.delete()
        except errors.FailedPrecondition:
            await self._rt.delete(force=True)
        await self._io.aclose()
        self._unmount()
        state.remove_quietly(self._dir / state.TASK)
        state.remove_quietly(self._dir / INIT_PID)
        self.deleted = True

    async def update(self, resources: dict[str, Any]) -> None:
        async with self._lock:
            self._require(api.CREATED, api.RUNNING)
            assert self._rt is not None
            path = self._dir / "resources.json"
            path.write_text(json.dumps(resources))
            try:
                await self._rt.update(path)
            finally:
                state.remove_quietly(path)

    async def reopen_log(self) -> None:
        self._require(api.RUNNING)
        assert self._io is not None
        if self._io.log is None:
            raise errors.FailedPrecondition(f"container {self.id} has no log file")
        try:
            self._io.log.reopen()
        except OSError as e:
            raise errors.FailedPrecondition(
                f"container {self.id}: reopen log {self._io.log.path}: {e}"
            ) from None

    # -- exec and attach ------------------------------------------------------

    async def exec_sync(self, p: api.ExecSyncParams) -> api.ExecSyncResult:
        self._require(api.RUNNING)
        assert self._execs is not None
        return await self._execs.run_sync(p)

    async def exec_stream(
        self, p: api.ExecStreamParams, conn: streams.StreamConn, ready: Ready
    ) -> None:
        self._require(api.RUNNING)
        assert self._execs is not None
        proc = await self._execs.start(
            args=p.args,
            env=p.env,
            cwd=p.cwd,
            tty=p.tty,
            stdin=p.stdin,
            stdout=p.stdout,
            stderr=p.stderr and not p.tty,
        )
        try:
            await ready()
        except BaseException:
            await proc.kill()
            proc.close()
            raise
        await self._execs.serve_stream(proc, conn)

    async def attach(self, p: api.AttachParams, conn: streams.StreamConn, ready: Ready) -> None:
        self._require(api.CREATED, api.RUNNING)
        assert self._io is not None
        await attach.serve(self._io, self._exit_code, p, conn, ready)

    async def close(self) -> None:
        """Stop background work (the shim is exiting)."""
        if self._oom is not None:
            self._oom.close()
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)


def _sigkilled(wait_status: int) -> bool:
    return os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
