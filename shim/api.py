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
        check_spec(self.id, str(self.state_dir))


def check_spec(shim_id: str, state_dir: str) -> None:
    """ShimSpec.validate on plain strings (the template checks requests without a ShimSpec)."""
    if not _ID.fullmatch(shim_id):
        raise InvalidArgument(f"invalid container id {shim_id!r}")
    if not state_dir.startswith("/"):
        raise InvalidArgument(f"shim {shim_id}: state dir {state_dir} is not absolute")


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

# A field decoder takes (value, where) and returns the field's value or raises
# InvalidArgument; `where` is (record name, field name), for an error message.
_Where = tuple[str, str]
_Decoder = typing.Callable[[object, _Where], Any]
_Encoder = typing.Callable[[object], Any]


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one record type crosses the wire, worked out once from its annotations.

    Forked shims share the codecs the template built (see `warm_codec`), and
    then run a few small functions per record instead of typing's machinery:
    every function a shim runs costs it pages (see shim.template).
    """

    names: tuple[str, ...]
    encoders: tuple[_Encoder | None, ...]  # None: the value is JSON as it is
    decoders: tuple[_Decoder, ...]
    plain: bool  # no field needs an encoder


_CODECS: dict[type[Any], _Codec] = {}


def _codec(cls: type[Any]) -> _Codec:
    codec = _CODECS.get(cls)
    if codec is None:
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        encoders = tuple(_encoder_for(hints[n]) for n in names)
        decoders = tuple(_decoder_for(hints[n]) for n in names)
        plain = all(e is None for e in encoders)
        codec = _CODECS[cls] = _Codec(names, encoders, decoders, plain)
    return codec


def to_wire(record: object) -> dict[str, Any]:
    """A record as a JSON-ready dict (bytes become base64, paths strings)."""
    codec = _codec(type(record))
    values = [getattr(record, name) for name in codec.names]
    if not codec.plain:
        values = [v if e is None else e(v) for e, v in zip(codec.encoders, values, strict=True)]
    return dict(zip(codec.names, values, strict=True))


def from_wire(cls: type[R], data: object) -> R:
    """Build record `cls` from decoded JSON, checking every field's type.

    Unknown keys are ignored (version skew); a missing required field or a
    wrong type raises InvalidArgument.
    """
    if not isinstance(data, dict):
        raise InvalidArgument(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    codec = _codec(cls)
    kwargs: dict[str, Any] = {}
    for name, decode in zip(codec.names, codec.decoders, strict=True):
        if name in data:
            kwargs[name] = decode(data[name], (cls.__name__, name))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InvalidArgument(f"{cls.__name__}: {e}") from None


def warm_codec() -> None:
    """Build the codec of every record in this module (see `_Codec`)."""
    for value in list(globals().values()):
        if _is_record(value):
            _codec(value)


def _is_record(tp: object) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _encoder_for(tp: Any) -> _Encoder | None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType or origin is typing.Union:
        inner = [_encoder_for(a) for a in args if a is not type(None)]
        return None if inner == [None] else _encode
    if origin is tuple or tp in (bytes, Path) or _is_record(tp):
        return _encode
    return None  # str, int, float, bool, a dict of JSON


def _encode(value: object) -> Any:
    if _is_record(type(value)):
        return to_wire(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def _decoder_for(tp: Any) -> _Decoder:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType or origin is typing.Union:
        real = [a for a in args if a is not type(None)]
        inner = _decoder_for(real[0])
        if len(real) == len(args):
            return inner
        return lambda v, where: None if v is None else inner(v, where)
    if origin is tuple:
        return _tuple_decoder(_decoder_for(args[0]))
    if origin is dict:
        return _decode_dict
    if _is_record(tp):
        return lambda v, where: from_wire(tp, v)
    return lambda v, where: _decode_scalar(tp, v, where)


def _tuple_decoder(item: _Decoder) -> _Decoder:
    def decode(value: object, where: _Where) -> Any:
        if not isinstance(value, list):
            raise InvalidArgument(f"{_name(where)}: expected a list")
        return tuple(item(v, where) for v in value)

    return decode


def _decode_dict(value: object, where: _Where) -> Any:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{_name(where)}: expected an object")
    return value


def _decode_scalar(tp: Any, value: object, where: _Where) -> Any:
    if tp is bytes and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise InvalidArgument(f"{_name(where)}: invalid base64") from None
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    expected = getattr(tp, "__name__", tp)
    raise InvalidArgument(f"{_name(where)}: expected {expected}, got {value!r:.80}")


def _name(where: _Where) -> str:
    return f"{where[0]}.{where[1]}"
