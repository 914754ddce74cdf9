"""Child processes of the shim: spawning them and reaping everything.

The shim is a child subreaper, so besides the processes it starts (runc), the
container's init and exec'd processes are re-parented to it once runc exits.
One `Children` per process owns waitpid(): on SIGCHLD it calls waitpid(-1,
WNOHANG) until no zombie is left and hands each status to whoever watches
that pid (the keeper directly, asyncio code through `Reaper`). A status that
nobody watches yet is kept (bounded) because a pid learned later from a pid
file may already have exited; that is why nothing else here may call waitpid
(and why subprocess.Popen, which does, is not used).

Processes are started with posix_spawn: cheaper than fork+exec from Python,
and the shim's descriptors are all close-on-exec (PEP 446) except the ones
dup2'ed onto 0, 1, 2. Signals Python ignores (SIGPIPE, SIGXFSZ) are reset to
default so containers don't inherit SIG_IGN.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shim import fdio

_UNCLAIMED_MAX = 4096
_devnull: int | None = None


def devnull() -> int:
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull


class Children:
    """Exit statuses of all children: `reap()` collects them, `watch()` hands each to its watcher.

    A status that nobody watches yet is kept (bounded): a pid learned later
    from a pid file may already have exited.
    """

    def __init__(self) -> None:
        self._watched: dict[int, Callable[[int], None]] = {}
        self._unclaimed: collections.OrderedDict[int, int] = collections.OrderedDict()

    def watch(self, pid: int, callback: Callable[[int], None], *, adopted: bool) -> None:
        """Call `callback(wait status)` once child `pid` is reaped (maybe at once).

        Any status kept for an earlier process with the same pid is stale,
        unless `adopted` (the pid came from a runtime pid file: re-parented
        to us) and /proc no longer has it: then it already exited and the
        kept status is its own. Watch a spawned child before reaping again.
        """
        if not adopted or _exists(f"/proc/{pid}"):
            self._unclaimed.pop(pid, None)
        if pid in self._unclaimed:
            callback(self._unclaimed.pop(pid))
        else:
            self._watched[pid] = callback

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            callback = self._watched.pop(pid, None)
            if callback is not None:
                callback(status)
                continue
            self._unclaimed[pid] = status
            if len(self._unclaimed) > _UNCLAIMED_MAX:
                self._unclaimed.popitem(last=False)


def _exists(path: str) -> bool:
    # os.path.exists is Python code the keeper would run (see shim.template); os.stat is not.
    try:
        os.stat(path)
    except OSError:
        return False
    return True


class Reaper:
    """`Children` for asyncio: `watch_*(pid)` resolve to the wait status."""

    def __init__(self) -> None:
        self._children = Children()
        self._futures: dict[int, asyncio.Future[int]] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def reap(self) -> None:
        self._children.reap()

    def watch_spawned(self, pid: int) -> asyncio.Future[int]:
        """A future for the wait status of a child we just spawned.

        Call this before yielding to the loop after spawning.
        """
        return self._watch(pid, adopted=False)

    def watch_adopted(self, pid: int) -> asyncio.Future[int]:
        """A future for a pid read from a runtime pid file (re-parented to us)."""
        return self._watch(pid, adopted=True)

    def _watch(self, pid: int, *, adopted: bool) -> asyncio.Future[int]:
        fut = self._futures.get(pid)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._futures[pid] = fut
            self._children.watch(pid, lambda status: self._deliver(pid, status), adopted=adopted)
        return fut

    def _deliver(self, pid: int, status: int) -> None:
        fut = self._futures.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(status)


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start `argv` with the given fds (None: /dev/null) as 0, 1, 2; return its pid."""
    actions = [
        (os.POSIX_SPAWN_DUP2, devnull() if fd is None else fd, target)
        for target, fd in enumerate((stdin, stdout, stderr))
    ]
    return os.posix_spawnp(
        argv[0],
        list(argv),
        dict(os.environ) if env is None else env,
        file_actions=actions,
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        setsigmask=(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    exit_code: int
    stdout: bytes
    stderr: bytes


async def run(reaper: Reaper, argv: Sequence[str], seconds: float = 120.0) -> Completed:
    """Run a short command to completion, capturing its output.

    After `seconds` the command is killed and TimeoutError raised.
    """
    out_r, out_w = fdio.pipe()
    err_r, err_w = fdio.pipe()
    try:
        pid = spawn(argv, stdout=out_w, stderr=err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    exited = reaper.watch_spawned(pid)
    try:
        async with asyncio.timeout(seconds):
            (out, _), (err, _) = await asyncio.gather(
                fdio.read_all(out_r, 1 << 20), fdio.read_all(err_r, 1 << 20)
            )
        status = await wait(exited, pid, seconds)
    except TimeoutError:
        await kill_and_wait(exited, pid)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    return Completed(exit_code=exit_code_of(status), stdout=out, stderr=err)


@dataclass(frozen=True, slots=True, kw_only=True)
class Collected:
    status: int  # the wait status
    outputs: list[bytes]
    timed_out: bool


def collect_blocking(
    pid: int, fds: Sequence[int], *, seconds: float | None, limit: int, drain: float
) -> Collected:
    """Wait for child `pid` while reading `fds` (blocking, without an event loop).

    Each output is read to its end but only `limit` bytes of it kept, so the
    child never blocks on a full pipe. After `seconds` (None: no limit) the
    child is killed and `timed_out` set. Once it has exited its outputs get
    `drain` more seconds: something it left behind may hold them open.
    """
    pidfd = os.pidfd_open(pid)
    kept = {fd: bytearray() for fd in fds}
    reading = list(fds)
    deadline = None if seconds is None else time.monotonic() + seconds
    status: int | None = None
    timed_out = False
    try:
        while status is None or reading:
            if status is None:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                watched = [*reading, pidfd]
            else:
                assert deadline is not None  # set when the child was reaped
                wait = max(0.0, deadline - time.monotonic())
                watched = reading
            ready = select.select(watched, [], [], wait)[0]
            if not ready:
                if status is not None:
                    break  # drained long enough
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                timed_out, deadline = True, None
            for fd in ready:
                if fd == pidfd:
                    status = os.waitpid(pid, 0)[1]
                    deadline = time.monotonic() + drain
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    reading.remove(fd)
                elif len(kept[fd]) < limit:
                    kept[fd] += chunk[: limit - len(kept[fd])]
    finally:
        os.close(pidfd)
    assert status is not None
    return Collected(status=status, outputs=[bytes(kept[fd]) for fd in fds], timed_out=timed_out)


def run_blocking(argv: Sequence[str], seconds: float = 120.0) -> Completed:
    """`run` without an event loop, where nothing else reaps (a worker of the keeper)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = spawn(argv, stdout=out_w, stderr=err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    try:
        got = collect_blocking(pid, [out_r, err_r], seconds=seconds, limit=1 << 20, drain=seconds)
    finally:
        os.close(out_r)
        os.close(err_r)
    if got.timed_out:
        raise TimeoutError
    out, err = got.outputs
    return Completed(exit_code=exit_code_of(got.status), stdout=out, stderr=err)


def wait_blocking(pid: int, seconds: float) -> int:
    """The wait status of child `pid`; after `seconds` it is killed and TimeoutError raised."""
    got = collect_blocking(pid, [], seconds=seconds, limit=0, drain=0)
    if got.timed_out:
        raise TimeoutError
    return got.status


async def wait(exited: asyncio.Future[int], pid: int, seconds: float | None) -> int:
    """The wait status of child `pid`; after `seconds` it is killed and TimeoutError raised."""
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.shield(exited)
    except TimeoutError:
        await kill_and_wait(exited, pid)
        raise


async def kill_and_wait(exited: asyncio.Future[int], pid: int) -> int:
    """SIGKILL child `pid` unless it was reaped (so the pid is still ours); its status."""
    if not exited.done():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return await exited


def exit_code_of(wait_status: int) -> int:
    """The shell-style exit code of a waitpid status: 128+N for signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)
