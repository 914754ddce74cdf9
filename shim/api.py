"""Records and contracts shared by the shim server and its client.

Everything that crosses `shim.sock` is one of these records, converted to and
from JSON by `to_wire` / `from_wire`. Decoding ignores keys it does not know:
a shim outlives the berthd that spawned it, so an upgraded berthd may talk to
an older shim (and the other way round) as long as fields are only added.

Container task life cycle (one task per shim)::

    (none) --create--> created --start--> running --exit--> stopped
       ^                  |                                   |
       |   create fails:  |  kill before start -> stopped     |
       +-- everything undone                                  |
                    delete (any state; kills first) <---------+
                    -> reply, exit.json kept, shim process exits
"""

from __future__ import annotations

import base64
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shim.errors import InvalidArgument

CREATED = "created"
RUNNING = "running"
STOPPED = "stopped"

REASON_OOM = "OOMKilled"

# Stream frame channels (see shim.protocol for the frame layout).
CH_STDIN = 0
CH_STDOUT = 1
CH_STDERR = 2
CH_EXIT = 3
CH_RESIZE = 4
CH_STDIN_CLOSE = 5

MAX_EXEC_OUTPUT = 16 << 20


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShimSpec:
    """What a new shim needs to know: its id and its private state directory."""

    id: str
    state_dir: Path

    def validate(self) -> None:
        """InvalidArgument unless the id is safe as a runtime id and file name."""
        if not _ID.fullmatch(self.id):
            raise InvalidArgument(f"invalid container id {self.id!r}")
        if not self.state_dir.is_absolute():
            raise InvalidArgument(f"shim {self.id}: state dir {self.state_dir} is not absolute")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShimInfo:
    """Identity of a live shim, as answered by method `info`."""

    id: str
    pid: int
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One rootfs mount; the shim mounts each on `<bundle>/rootfs` in order."""

    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateParams:
    """How to create the container: the bundle (config.json written by berthd) and IO."""

    bundle: str
    runtime_root: str
    runtime: str = "/usr/sbin/runc"
    # Global runtime flags, placed before the subcommand (e.g. "--systemd-cgroup").
    runtime_options: tuple[str, ...] = ()
    rootfs_mounts: tuple[Mount, ...] = ()
    log_path: str = ""
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """A snapshot of the container task.

    `exit_code` is 128+N when the process died of signal N (137 for SIGKILL).
    `reason` is "OOMKilled" when the container's memory cgroup saw an OOM kill.
    `log_errors` counts log records lost to write errors (disk full, ...).
    """

    id: str
    status: str
    pid: int = 0
    exit_code: int = 0
    started_at_ns: int = 0
    finished_at_ns: int = 0
    oom_killed: bool = False
    reason: str = ""
    message: str = ""
    log_errors: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KillParams:
    signal: int
    all: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitParams:
    timeout: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateParams:
    """`resources` is the OCI `linux.resources` object."""

    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecSyncParams:
    """A command run to completion; `timeout` None or <= 0 means no limit."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = ""
    timeout: float | None = None
    max_output: int = MAX_EXEC_OUTPUT


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecSyncResult:
    """Captured output (each stream cut at `max_output` bytes) and the exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecStreamParams:
    """An interactive exec; with `tty` stderr is merged into stdout."""

    args: tuple[str, ...]
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    env: tuple[str, ...] = ()
    cwd: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachParams:
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


class TaskAPI(Protocol):
    """The container task of one shim, as berthd sees it.

    Errors are `shim.errors` kinds; every message names the container id.
    """

    async def create(self, params: CreateParams) -> TaskState:
        """Mount the rootfs, open IO and run `<runtime> create`.

        Raises AlreadyExists if a task exists, FailedPrecondition when the
        runtime refuses (its error in the message), Unavailable when it cannot
        be run. A failed create leaves nothing behind (mounts, runtime state).
        """
        ...

    async def start(self) -> TaskState:
        """Start a created task. FailedPrecondition in any other state."""
        ...

    async def state(self) -> TaskState:
        """The current state. NotFound before create."""
        ...

    async def kill(self, signal: int, all: bool = False) -> None:
        """Signal the init process (`all`: every process of the container).

        A stopped task is left alone (idempotent). NotFound before create.
        """
        ...

    async def wait(self, timeout: float | None = None) -> TaskState:  # noqa: ASYNC109
        """Return the state once the task has stopped and its exit is on disk.

        DeadlineExceeded after `timeout` seconds; NotFound before create.
        """
        ...

    async def delete(self) -> TaskState:
        """Kill (if needed), wait, delete the runtime state, unmount, then the shim exits.

        exit.json stays in the state directory. Idempotent: deleting a shim
        that has already gone returns the recorded exit.
        """
        ...

    async def exec_sync(
        self,
        args: Sequence[str],
        *,
        env: Sequence[str] = (),
        cwd: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 (sent to the shim)
        max_output: int = MAX_EXEC_OUTPUT,
    ) -> ExecSyncResult:
        """Run a command in the container to completion.

        On timeout the process is killed and `timed_out` is set.
        FailedPrecondition unless the task is running.
        """
        ...

    async def reopen_log(self) -> None:
        """Reopen the CRI log file at the same path (after rotation).

        FailedPrecondition unless running; no file is created then.
        """
        ...

    async def update(self, resources: Mapping[str, Any]) -> None:
        """Apply OCI `linux.resources` through `<runtime> update`."""
        ...


# ---- wire codec -------------------------------------------------------------

R = TypeVar("R")


def to_wire(record: object) -> dict[str, Any]:
    """A record as a JSON-ready dict (bytes become base64, paths strings)."""
    return {f.name: _encode(getattr(record, f.name)) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


def _encode(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def from_wire(cls: type[R], data: object) -> R:
    """Build record `cls` from decoded JSON, checking every field's type.

    Unknown keys are ignored (version skew); a missing required field or a
    wrong type raises InvalidArgument.
    """
    if not isinstance(data, dict):
        raise InvalidArgument(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _decode(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InvalidArgument(f"{cls.__name__}: {e}") from None


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    # Resolving string annotations is costly; do it once per record type
    # (the template warms this cache, so forked shims share it).
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def warm_codec() -> None:
    """Resolve the annotations of every record in this module (see `_hints`)."""
    for value in list(globals().values()):
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            _hints(value)


def _decode(tp: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        return _decode_union(typing.get_args(tp), value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise InvalidArgument(f"{where}: expected a list")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where}: expected an object")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_wire(tp, value)
    return _decode_scalar(tp, value, where)


def _decode_union(options: tuple[Any, ...], value: object, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    real = [o for o in options if o is not type(None)]
    return _decode(real[0], value, where)


def _decode_scalar(tp: Any, value: object, where: str) -> Any:
    if tp is bytes and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise InvalidArgument(f"{where}: invalid base64") from None
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise InvalidArgument(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r:.80}")
