"""Driving the OCI runtime binary (runc, crun) for one container.

Every call gets its own `--log <state_dir>/runtime-<n>.log --log-format json`
file: `create` and `exec` hand their stdio to the container, so the runtime's
error text can't be taken from stderr there. The file is read on failure and
removed afterwards. Global options (`CreateParams.runtime_options`) go
before the subcommand.

Costs (FLOORS §1): every runc call is ~5 ms of Go start-up; `delete --force`
on a running container adds a 100 ms poll, so callers kill, reap, then
delete. Errors: a binary that cannot be executed is Unavailable; a non-zero
exit is FailedPrecondition carrying the runtime's message.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shim import errors, procs, state

# A runtime call that takes longer than this is killed (a wedged runc).
TIMEOUT = 120.0
_NOT_EXIST = ("does not exist", "not exist", "no such")


@dataclass(frozen=True, slots=True, kw_only=True)
class Stdio:
    """Descriptors for the runtime's 0, 1, 2 (None: /dev/null)."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None


class Runtime:
    """`<binary> --root <root> <options> <subcommand> ... <id>` for one container.

    Without a `reaper` every call blocks: for a worker without an event loop,
    whose coroutines then finish without ever suspending (see shim.workers).
    """

    def __init__(
        self,
        *,
        container_id: str,
        binary: str,
        root: str,
        options: Sequence[str],
        state_dir: Path,
        reaper: procs.Reaper | None,
    ) -> None:
        self.container_id = container_id
        self.binary = binary
        self._root = root
        self._options = tuple(options)
        self._state_dir = state_dir
        self._reaper = reaper
        self._seq = itertools.count()

    async def create(self, bundle: str, pid_file: Path, stdio: Stdio, console: str | None) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", str(pid_file)]
        if console is not None:
            args += ["--console-socket", console]
        await self._call([*args, self.container_id], stdio)

    async def start(self) -> None:
        await self._call(["start", self.container_id])

    async def kill(self, signal: int, all: bool = False) -> None:
        await self._call(["kill", *(["--all"] if all else []), self.container_id, str(signal)])

    async def delete(self, force: bool = False) -> None:
        """Delete the runtime's state; a container it doesn't know counts as deleted."""
        try:
            await self._call(["delete", *(["--force"] if force else []), self.container_id])
        except errors.FailedPrecondition as e:
            if not any(s in str(e).lower() for s in _NOT_EXIST):
                raise

    async def update(self, resources_file: Path) -> None:
        await self._call(["update", "--resources", str(resources_file), self.container_id])

    async def exec_detached(
        self, process_file: Path, pid_file: Path, stdio: Stdio, console: str | None
    ) -> None:
        args = ["exec", "--detach", "--process", str(process_file), "--pid-file", str(pid_file)]
        if console is not None:
            args += ["--console-socket", console]
        await self._call([*args, self.container_id], stdio)

    async def _call(self, args: list[str], stdio: Stdio | None = None) -> None:
        # The pid keeps the logs of concurrent workers apart.
        log = self._state_dir / f"runtime-{os.getpid()}-{next(self._seq)}.log"
        argv = [self.binary, "--root", self._root, "--log", str(log), "--log-format", "json"]
        argv += [*self._options, *args]
        try:
            code, stderr = await self._run(argv, stdio, args[0])
            if code != 0:
                message = _log_error(log) or stderr.decode(errors="replace").strip()
                raise errors.FailedPrecondition(
                    f"{Path(self.binary).name} {args[0]} of container {self.container_id} "
                    f"failed (exit {code}): {message}"
                )
        finally:
            state.remove_quietly(log)

    async def _run(self, argv: list[str], stdio: Stdio | None, sub: str) -> tuple[int, bytes]:
        try:
            if self._reaper is None:
                return _run_blocking(argv, stdio)
            if stdio is None:
                done = await procs.run(self._reaper, argv, seconds=TIMEOUT)
                return done.exit_code, done.stderr
            pid = procs.spawn(argv, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
            exited = self._reaper.watch_spawned(pid)
            return procs.exit_code_of(await procs.wait(exited, pid, TIMEOUT)), b""
        except OSError as e:
            raise errors.Unavailable(
                f"cannot run runtime {self.binary} for container {self.container_id}: {e}"
            ) from None
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"runtime {sub} of container {self.container_id} timed out"
            ) from None


def _run_blocking(argv: list[str], stdio: Stdio | None) -> tuple[int, bytes]:
    if stdio is None:
        done = procs.run_blocking(argv, seconds=TIMEOUT)
        return done.exit_code, done.stderr
    pid = procs.spawn(argv, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
    return procs.exit_code_of(procs.wait_blocking(pid, TIMEOUT)), b""


def _log_error(log: Path) -> str:
    """The last error message in a runtime's JSON log file."""
    message = ""
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    return message
