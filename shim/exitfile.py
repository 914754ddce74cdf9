"""`<state_dir>/exit.json`: the container's exit, persisted before anyone is told.

The shim writes this file (atomically, see shim.state) as soon as it has
reaped the container's init and drained its output, and only then lets
`state`/`wait` report the exit. berthd reads it directly after a restart when
the shim has already gone, and `berth-shim delete` writes one (exit code 255,
reason "Unknown") when a shim died before it could.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from shim import api, errors, state

UNKNOWN_EXIT_CODE = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    """How the container's init process ended."""

    pid: int
    exit_code: int
    started_at_ns: int = 0
    finished_at_ns: int
    oom_killed: bool = False
    reason: str = ""
    message: str = ""


def signal_name(exit_code: int) -> str:
    if exit_code <= 128:
        return ""
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return ""


def write(state_dir: str | Path, status: ExitStatus) -> None:
    """Persist `status` durably (atomic replace, fsync)."""
    state.write_json(f"{state_dir}/{state.EXIT}", api.to_wire(status))


def read(state_dir: str | Path) -> ExitStatus | None:
    """The recorded exit, or None if there is none (or it cannot be parsed)."""
    try:
        data = state.read_json(f"{state_dir}/{state.EXIT}")
    except ValueError:
        return None
    if data is None:
        return None
    try:
        return api.from_wire(ExitStatus, data)
    except errors.InvalidArgument:
        return None


def to_task_state(task_id: str, status: ExitStatus, *, log_errors: int = 0) -> api.TaskState:
    """The stopped TaskState that a recorded exit stands for."""
    return api.TaskState(
        id=task_id,
        status=api.STOPPED,
        pid=status.pid,
        exit_code=status.exit_code,
        started_at_ns=status.started_at_ns,
        finished_at_ns=status.finished_at_ns,
        oom_killed=status.oom_killed,
        reason=status.reason,
        message=status.message,
        log_errors=log_errors,
    )


def warm_codec() -> None:
    api.warm_codec()
    api.from_wire(ExitStatus, {"pid": 0, "exit_code": 0, "finished_at_ns": 0})
