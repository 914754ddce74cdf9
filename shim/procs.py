"""Child processes of the shim: spawning them and reaping everything.

The shim is a child subreaper, so besides the processes it starts (runc), the
container's init and exec'd processes are re-parented to it once runc exits.
One reaper owns waitpid(): on SIGCHLD it calls waitpid(-1, WNOHANG) until no
zombie is left and hands each status to whoever watches that pid. A status
that nobody watches yet is kept (bounded) because a pid learned later from a
pid file may already have exited; that is why nothing else here may call
waitpid (and why subprocess.Popen, which does, is not used).

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
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from shim import fdio

_UNCLAIMED_MAX = 4096
_devnull: int | None = None


def devnull() -> int:
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull


class Reaper:
    """Collects exit statuses of all children; `watch(pid)` resolves to the wait status."""

    def __init__(self) -> None:
        self._watched: dict[int, asyncio.Future[int]] = {}
        self._unclaimed: collections.OrderedDict[int, int] = collections.OrderedDict()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def watch_spawned(self, pid: int) -> asyncio.Future[int]:
        """A future for the wait status of a child we just spawned.

        Any status kept for an earlier process with the same pid is stale.
        Call this before yielding to the loop after spawning.
        """
        self._unclaimed.pop(pid, None)
        return self._watch(pid)

    def watch_adopted(self, pid: int) -> asyncio.Future[int]:
        """A future for a pid read from a runtime pid file (re-parented to us).

        If /proc still has it (alive or zombie), we have not reaped it and a
        kept status is stale; otherwise it already exited and the kept status
        is the one.
        """
        if os.path.exists(f"/proc/{pid}"):
            self._unclaimed.pop(pid, None)
        return self._watch(pid)

    def _watch(self, pid: int) -> asyncio.Future[int]:
        fut = self._watched.get(pid)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._watched[pid] = fut
            if pid in self._unclaimed:
                self._deliver(pid, self._unclaimed.pop(pid))
        return fut

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._deliver(pid, status)

    def _deliver(self, pid: int, status: int) -> None:
        fut = self._watched.pop(pid, None)
        if fut is None:
            self._unclaimed[pid] = status
            if len(self._unclaimed) > _UNCLAIMED_MAX:
                self._unclaimed.popitem(last=False)
        elif not fut.done():
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
