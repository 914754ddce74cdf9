"""`berth-shim delete`: clean up after a shim that died.

berthd runs this when it finds a container whose shim is gone (crash, OOM
kill of the shim, reboot of berthd with a wiped template). It is idempotent
and refuses to act while the shim still answers on its socket. Steps: kill
the container (`runc kill KILL`, then wait for the init via a pidfd: the
init is not our child), `runc delete --force`, remove what is left of the
runtime's state directory, unmount the rootfs (from task.json), and make
sure exit.json exists: the real one if the shim wrote it, else exit code
255 with reason "Unknown" (nobody could reap the init). Prints exit.json.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from shim import errors, exitfile, mount, state, workers

KILL_WAIT = 10.0


def shim_answers(state_dir: Path) -> bool:
    """Whether something accepts connections on the shim's socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        with state.socket_path(state_dir / state.SOCKET) as name:
            sock.connect(name)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def delete(
    *, state_dir: Path, runtime: str, runtime_root: str, id: str, options: Sequence[str] = ()
) -> exitfile.ExitStatus:
    """Remove the container of a dead shim; return its (possibly unknown) exit."""
    if shim_answers(state_dir):
        raise errors.FailedPrecondition(f"shim of container {id} is alive; delete through it")
    argv = [runtime, "--root", runtime_root, *options]
    init = _init_pid(state_dir)
    _run([*argv, "kill", id, "KILL"])
    if init is not None:
        _wait_gone(init, KILL_WAIT)
    _run([*argv, "delete", "--force", id])
    shutil.rmtree(Path(runtime_root, id), ignore_errors=True)
    try:
        record = state.read_json(state_dir / state.TASK)
    except ValueError:  # cut short by a power loss (it is not fsynced): nothing is mounted
        record = None
    if not isinstance(record, dict):
        record = {}
    if record.get("mounted") and record.get("rootfs"):
        mount.unmount_all(str(record["rootfs"]))
    status = exitfile.read(state_dir) or _unknown_exit(state_dir, init)
    for name in (state.TASK, workers.INIT_PID, state.SOCKET, state.PID):
        state.remove_quietly(state_dir / name)
    return status


def _init_pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / workers.INIT_PID).read_text().strip())
    except (OSError, ValueError):
        return None


def _run(argv: list[str]) -> None:
    # Failures are expected here (the container may be long gone).
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(argv, capture_output=True, timeout=60, check=False)


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _unknown_exit(state_dir: Path, init: int | None) -> exitfile.ExitStatus:
    status = exitfile.ExitStatus(
        pid=init or 0,
        exit_code=exitfile.UNKNOWN_EXIT_CODE,
        finished_at_ns=time.time_ns(),
        reason="Unknown",
        message="the shim died before it recorded the exit",
    )
    if state_dir.is_dir():
        exitfile.write(state_dir, status)
    return status
