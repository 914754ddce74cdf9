"""Short-lived workers the keeper forks for everything but watching.

The keeper (shim.keeper) must stay small: every page it writes is its own
for the rest of the container's life. So whatever needs the runtime, asyncio
or much code runs in a child forked for the purpose, which exits when done
and takes the pages it dirtied with it:

    keeper ──fork──> worker: job() → one result frame on a pipe → exit

Most jobs call the runtime and wait for it, blocking: without an event loop,
whose set-up would be most of such a worker's cost. Stream jobs run under
asyncio. Action and exec workers write `{"result": ...}` or `{"error": {...}}` to the
result pipe, as one protocol frame: the keeper answers as soon as the frame is
whole, without waiting for the worker's exit. Stream workers
(`exec_stream`, `attach`) are handed the client connection itself and answer
on it directly; they end with the stream.

A worker dies with the keeper (PR_SET_PDEATHSIG). It is not a child
subreaper unless it execs processes: the container's init must be
re-parented to the keeper when `runc create` exits, an exec'd process to the
worker that waits for it. On SIGTERM a worker kills the processes it exec'd
(the keeper sends it when the container is deleted).

The worker is a fork of the keeper: it holds a copy of each of the keeper's
descriptors. Those it must not keep (`close`) are closed by number; their
Python objects stay untouched until os._exit, so nothing closes a number
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from shim import (
    api,
    attach,
    daemon,
    errors,
    execs,
    mount,
    oom,
    procs,
    protocol,
    runtime,
    state,
    streams,
)

INIT_PID = "init.pid"

Job = Callable[[], Coroutine[Any, Any, Any]]


def fork(
    job: Job, *, close: Iterable[int], subreaper: bool = False, blocking: bool = False
) -> tuple[int, int]:
    """Run `job` in a forked worker; (its pid, the read end of its result pipe).

    A `blocking` job runs without an event loop (its runtime calls block, so
    its coroutine never suspends): setting up asyncio is most of the cost of a
    worker that only calls runc once.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    keeper = os.getpid()
    pid = daemon.raw_fork()
    if pid:
        os.close(w)
        os.set_blocking(r, False)
        return pid, r
    code = 1
    try:
        os.close(r)
        _become_worker(keeper, close, subreaper)
        try:
            result = _complete(job()) if blocking else asyncio.run(_guarded(job))
            out: dict[str, Any] = {"result": result}
        except Exception as e:
            errors.report(e)
            out = {"error": protocol.error_to_wire(e)}
        # One frame: the keeper answers as soon as it is whole, not when this
        # process has finished exiting.
        _write_all(w, protocol.encode(out))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _become_worker(keeper: int, close: Iterable[int], subreaper: bool) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    daemon.prctl(daemon.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != keeper:
        os._exit(1)  # the keeper died before the death signal was armed
    if subreaper:
        daemon.prctl(daemon.PR_SET_CHILD_SUBREAPER, 1)
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)


async def _guarded(job: Job) -> Any:
    loop = asyncio.get_running_loop()
    reaper = procs.Reaper()
    reaper.install(loop)
    _reapers.append(reaper)
    loop.add_signal_handler(signal.SIGTERM, _kill_execs)
    return await job()


# This worker's reaper, and the exec runners whose processes SIGTERM kills.
_reapers: list[procs.Reaper] = []
_runners: list[execs.Execs] = []


def _reaper() -> procs.Reaper | None:
    """This worker's reaper; None in a blocking worker (nothing reaps but the calls that wait)."""
    return _reapers[0] if _reapers else None


def _complete(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (a blocking job) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking job waited for an event loop")


def _kill_execs() -> None:
    for runner in _runners:
        runner.signal_all(signal.SIGKILL)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- the container's runtime ----------------------------------------------------


def runtime_of(id: str, state_dir: str, p: api.CreateParams) -> runtime.Runtime:
    return runtime.Runtime(
        container_id=id,
        binary=p.runtime,
        root=p.runtime_root,
        options=p.runtime_options,
        state_dir=Path(state_dir),
        reaper=_reaper(),
    )


def load_config(id: str, bundle: str) -> dict[str, Any]:
    try:
        config = json.loads(Path(bundle, "config.json").read_bytes())
    except (OSError, ValueError) as e:
        raise errors.FailedPrecondition(
            f"container {id}: cannot read {bundle}/config.json: {e}"
        ) from None
    if not isinstance(config, dict):
        raise errors.InvalidArgument(f"container {id}: config.json is not an object")
    return config


def rootfs_of(bundle: str, config: dict[str, Any]) -> str:
    return str(Path(bundle, config.get("root", {}).get("path", "rootfs")))


async def create(
    id: str, state_dir: str, p: api.CreateParams, stdio: runtime.Stdio, console: str | None
) -> dict[str, Any]:
    """Mount the rootfs and `runc create`; undo both on failure.

    Result: {"pid": the init's, "rootfs": path, "cgroup": its memory cgroup or
    None, "shares_pid_ns": whether it has no PID namespace of its own}.
    """
    config = load_config(id, p.bundle)
    rootfs = rootfs_of(p.bundle, config)
    task_dir = Path(state_dir)
    # Not fsynced: it tells a clean-up what is mounted, and after a power loss
    # nothing is (the cleanup copes with a file cut short).
    state.write_json(
        task_dir / state.TASK,
        {"id": id, "rootfs": rootfs, "mounted": bool(p.rootfs_mounts)},
        durable=False,
    )
    rt = runtime_of(id, state_dir, p)
    try:
        if p.rootfs_mounts:
            os.makedirs(rootfs, exist_ok=True)
            try:
                mount.mount_all(p.rootfs_mounts, rootfs)
            except OSError as e:
                raise errors.FailedPrecondition(f"container {id}: rootfs mount: {e}") from None
        await rt.create(p.bundle, task_dir / INIT_PID, stdio, console)
        try:
            pid = int((task_dir / INIT_PID).read_text().strip())
        except (OSError, ValueError) as e:
            raise errors.Unavailable(f"container {id}: no init pid from runtime: {e}") from None
    except BaseException:
        await _undo(rt, task_dir, rootfs)
        raise
    # Found here rather than in the keeper: parsing mountinfo would dirty its pages.
    cgroup = oom.memory_cgroup_of(pid)
    return {
        "pid": pid,
        "rootfs": rootfs,
        "cgroup": None if cgroup is None else str(cgroup),
        "shares_pid_ns": shares_pid_namespace(config),
    }


def shares_pid_namespace(config: dict[str, Any]) -> bool:
    """Whether the container joins a PID namespace (the pod's, the host's) rather than
    having one of its own: then its init's exit does not end the other processes."""
    linux = config.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    if not isinstance(namespaces, list):
        return True
    for ns in namespaces:
        if isinstance(ns, dict) and ns.get("type") == "pid":
            return bool(ns.get("path"))
    return True


async def _undo(rt: runtime.Runtime, state_dir: Path, rootfs: str) -> None:
    with contextlib.suppress(errors.Error):
        await rt.delete(force=True)
    mount.unmount_all(rootfs)
    state.remove_quietly(state_dir / state.TASK)
    state.remove_quietly(state_dir / INIT_PID)


async def undo_create(id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
    """Remove a container whose `runc create` worked but which the keeper could not adopt."""
    await _undo(runtime_of(id, state_dir, p), Path(state_dir), rootfs)


async def start(id: str, state_dir: str, p: api.CreateParams) -> None:
    await runtime_of(id, state_dir, p).start()


async def kill_all(id: str, state_dir: str, p: api.CreateParams, sig: int) -> None:
    await runtime_of(id, state_dir, p).kill(sig, all=True)


async def update(id: str, state_dir: str, p: api.CreateParams, resources: dict[str, Any]) -> None:
    path = Path(state_dir, f"resources-{os.getpid()}.json")
    state.write_atomic(path, json.dumps(resources).encode(), durable=False)
    try:
        await runtime_of(id, state_dir, p).update(path)
    finally:
        state.remove_quietly(path)


async def teardown(id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
    """After the init was reaped: delete the runtime's state, unmount, forget the task."""
    rt = runtime_of(id, state_dir, p)
    try:
        await rt.delete()
    except errors.FailedPrecondition:
        await rt.delete(force=True)
    if rootfs:
        mount.unmount_all(rootfs)
    state.remove_quietly(Path(state_dir, state.TASK))
    state.remove_quietly(Path(state_dir, INIT_PID))


# -- exec -------------------------------------------------------------------------


def _execs_of(id: str, state_dir: str, p: api.CreateParams) -> execs.Execs:
    base = load_config(id, p.bundle).get("process", {})
    reaper = _reaper()
    assert reaper is not None, "exec jobs run with an event loop"
    runner = execs.Execs(
        rt=runtime_of(id, state_dir, p), reaper=reaper, state_dir=Path(state_dir), base=base
    )
    _runners.append(runner)
    return runner


async def exec_sync(
    id: str, state_dir: str, p: api.CreateParams, params: api.ExecSyncParams
) -> dict[str, Any]:
    """A blocking job (see execs.run_sync_blocking); the worker is a child subreaper."""
    base = load_config(id, p.bundle).get("process", {})
    rt = runtime_of(id, state_dir, p)
    return api.to_wire(await execs.run_sync_blocking(rt, Path(state_dir), base, params))


# -- streams ----------------------------------------------------------------------


async def open_stream(fd: int, leftover: bytes) -> tuple[streams.StreamConn, asyncio.StreamWriter]:
    """The handed-over client connection (a socket descriptor, now ours); `leftover` are
    bytes the keeper read past the request."""
    sock = socket.socket(fileno=fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=protocol.MAX_REQUEST, loop=loop)
    if leftover:
        reader.feed_data(leftover)
    sock.setblocking(False)
    transport, proto = await loop.create_unix_connection(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), sock=sock
    )
    writer = asyncio.StreamWriter(transport, proto, reader, loop)
    return streams.StreamConn(reader, writer), writer


async def answer_ok(writer: asyncio.StreamWriter, rid: object) -> None:
    writer.write(protocol.encode(protocol.response(rid, None)))
    await writer.drain()


async def answer_error(
    conn: streams.StreamConn, writer: asyncio.StreamWriter, rid: object, e: BaseException
) -> None:
    if not conn.closed:
        writer.write(protocol.encode(protocol.error_response(rid, e)))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def exec_stream(
    id: str,
    state_dir: str,
    p: api.CreateParams,
    fd: int,
    leftover: bytes,
    rid: object,
    params: api.ExecStreamParams,
) -> None:
    conn, writer = await open_stream(fd, leftover)
    try:
        runner = _execs_of(id, state_dir, p)
        proc = await runner.start(
            args=params.args,
            env=params.env,
            cwd=params.cwd,
            tty=params.tty,
            stdin=params.stdin,
            stdout=params.stdout,
            stderr=params.stderr and not params.tty,
        )
    except Exception as e:
        errors.report(e)
        await answer_error(conn, writer, rid, e)
        await conn.close()
        return
    try:
        await answer_ok(writer, rid)
    except BaseException:
        await proc.kill()
        proc.close()
        await conn.close()
        raise
    await runner.serve_stream(proc, conn)


async def attach_stream(
    fd: int,
    leftover: bytes,
    rid: object,
    params: api.AttachParams,
    ends: attach.Ends,
) -> None:
    """Serve one attachment: output and the exit code arrive on `feed` from the keeper."""
    conn, writer = await open_stream(fd, leftover)
    await answer_ok(writer, rid)
    await attach.serve_feed(conn, params, ends)
