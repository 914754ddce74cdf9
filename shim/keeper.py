"""The keeper: the long-lived part of a shim, kept small on purpose.

    (none) --create--> created --start--> running --exit--> stopped
                          |                                    |
                          +-------- kill / exit ---------------+--delete--> deleted

A shim is a fork of the warmed template (shim.template). Each page it writes
stops being shared with the template and is its own for the container's whole
life, and CPython writes a reference count into every object it touches: each
Python function the keeper runs costs it a few pages. So the process that
stays — the keeper — runs one epoll loop over few objects, keeps to its own
code (bare descriptors and os calls, not socket objects; strings, not
pathlib; protocol's one-time JSON codec), and does only what must outlive
every request. Not even api's record codecs run here on the common path: a
create request is kept as the JSON object it came as (the keeper checks the
few fields it reads itself) and each worker that needs it decodes it into
CreateParams, every field checked, before doing anything (so are `exec_sync`'s
and `update`'s parameters); `state`, `wait` and the actions answer with the
running task's TaskState written out as its wire dict. That spares each shim
0.1-0.2 MiB of its own (docs/bench/keeper.md). The keeper:

- it is the child subreaper and the parent of the container's init: it reaps
  the init, reads the memory cgroup's OOM counter, drains the output and
  writes exit.json durably before anyone hears of the exit;
- it reads the container's output into the CRI log and into attachments'
  feeds (shim.attach);
- it serves the framed protocol on shim.sock (shim.protocol): `info`,
  `state`, `wait`, `kill` and `reopen_log` itself; everything that runs the
  OCI runtime or asyncio runs in a worker it forks (shim.workers), which
  exits when done and takes the pages it dirtied with it.

`create`, `start`, `update` and `delete` run one at a time, in arrival
order. `exec_sync` and `kill --all` run beside them. A connection whose first
request is `exec_stream` or `attach` is handed to a stream worker.

`kill` signals the init directly (cheaper than runc kill, and safe: until
the keeper reaps it the pid cannot be reused). `delete` kills, waits for the
exit, stops the execs, deletes the runtime state (never `delete --force` on
a running container: FLOORS §1), unmounts the rootfs and then the keeper
exits after replying.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from shim import (
    api,
    attach,
    errors,
    exitfile,
    logger,
    oom,
    procs,
    protocol,
    runtime,
    stdio,
    workers,
)

VERSION = 1
CONSOLE = "console.sock"
# Output still unread this long after the init exited is given up on.
DRAIN_TIMEOUT = 2.0
CONSOLE_TIMEOUT = 10.0
READ_CHUNK = 1 << 16
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_STREAMS = frozenset({"exec_stream", "attach"})

T = TypeVar("T")
Done = Callable[[Any, BaseException | None], None]


class Jobs(Protocol):
    """What the keeper's workers run: shim.workers, or fakes in unit tests.

    Each runs in a worker of its own (asyncio); what it returns is the
    request's result (JSON), what it raises the request's error.
    """

    async def create(
        self,
        id: str,
        state_dir: str,
        p: api.CreateParams,
        stdio: runtime.Stdio,
        console: str | None,
    ) -> dict[str, Any]:
        """Mount and `runc create`, undone on failure; {"pid": init pid, "rootfs": path}."""
        ...

    async def undo_create(self, id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
        """Remove a created container the keeper could not adopt."""
        ...

    async def start(self, id: str, state_dir: str, p: api.CreateParams) -> None: ...
    async def kill_all(self, id: str, state_dir: str, p: api.CreateParams, sig: int) -> None: ...
    async def update(
        self, id: str, state_dir: str, p: api.CreateParams, resources: dict[str, Any]
    ) -> None: ...
    async def teardown(self, id: str, state_dir: str, p: api.CreateParams, rootfs: str) -> None:
        """After the init was reaped: runtime state, mounts and task files go."""
        ...

    async def exec_sync(
        self, id: str, state_dir: str, p: api.CreateParams, params: api.ExecSyncParams
    ) -> dict[str, Any]: ...
    async def exec_stream(
        self,
        id: str,
        state_dir: str,
        p: api.CreateParams,
        fd: int,
        leftover: bytes,
        rid: object,
        params: api.ExecStreamParams,
    ) -> None:
        """Serve an exec on the handed-over connection (a socket descriptor, now the
        worker's), answering its request first."""
        ...

    async def attach_stream(
        self,
        fd: int,
        leftover: bytes,
        rid: object,
        params: api.AttachParams,
        ends: attach.Ends,
    ) -> None:
        """Serve an attachment on the handed-over connection (see shim.attach)."""
        ...


class Conn:
    """One client connection: request frames in, response frames out (non-blocking).

    A bare descriptor, read and written with os.read/os.write: socket objects
    are Python code the keeper would otherwise run (see the module doc).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.first = True
        self.open = True
        self.close_when_flushed = False


class _CreateRequest:
    """A create request as it came, with the fields the keeper itself reads checked.

    The whole request is decoded (api.CreateParams, every field checked) by the
    workers, from `wire`: see the module doc.
    """

    def __init__(self, params: object) -> None:
        if not isinstance(params, dict):
            raise errors.InvalidArgument("CreateParams: expected an object")
        self.wire = params
        self.log_path = _field(params, "log_path", str, "")
        self.tty = _field(params, "tty", bool, False)
        self.stdin = _field(params, "stdin", bool, False)
        self.stdin_once = _field(params, "stdin_once", bool, False)

    def decode(self) -> api.CreateParams:
        """The whole request, every field checked: call it in a worker (see the module doc)."""
        return api.from_wire(api.CreateParams, self.wire)


@dataclasses.dataclass(eq=False)
class Waiter:
    conn: Conn
    rid: object


class Keeper:
    """The shim of one container (see module doc). `run()` returns once it is deleted."""

    def __init__(
        self, shim_id: str, state_dir: str, listener: socket.SocketType, jobs: Jobs | None = None
    ) -> None:
        self.id = shim_id
        self._jobs: Jobs = workers if jobs is None else jobs
        self._dir = state_dir
        self._listener = listener
        self._poll = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._conns: dict[int, Conn] = {}
        self._children = procs.Children()
        self._exec_workers: set[int] = set()
        self._timers: list[tuple[float, Callable[[], None]]] = []
        self._actions: collections.deque[tuple[Conn, object, Callable[[], None]]] = (
            collections.deque()
        )
        self._busy = False
        self._done = False
        self._wake = (-1, -1)
        # The task.
        self._params: _CreateRequest | None = None
        self._creating = False
        self._deleted = False
        self._rootfs = ""
        self._io: stdio.ContainerIO | None = None
        self._pid = 0
        self._cgroup: str | None = None
        self._shares_pid_ns = False
        self._oom: oom.Watch | None = None
        self._reaped = False
        self._wait_status = 0
        self._oom_killed = False
        self._finished = 0
        self._started = False
        self._started_at = 0
        self._exit: exitfile.ExitStatus | None = None
        self._waiters: list[Waiter] = []
        self._after_exit: list[Callable[[], None]] = []

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (r, w)
        signal.set_wakeup_fd(w)
        _handle_sigchld()
        self._watch(r, self._on_signal)
        self._listener.setblocking(False)
        self._watch(self._listener.fileno(), self._on_accept)
        self._reap()
        while not self._done:
            for fd, events in self._poll.poll(self._timeout()):
                handler = self._handlers.get(fd)
                if handler is not None:
                    _guard(handler, events)
            self._run_timers()
        self._shutdown()

    def _watch(self, fd: int, handler: Callable[[int], None], events: int = _IN) -> None:
        self._handlers[fd] = handler
        self._poll.register(fd, events)

    def _unwatch(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._poll.unregister(fd)
            except OSError:
                pass

    def _timeout(self) -> float:
        if not self._timers:
            return -1
        return max(0.0, min(t for t, _ in self._timers) - time.monotonic())

    def _add_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        self._timers.append((time.monotonic() + seconds, callback))

    def _run_timers(self) -> None:
        if not self._timers:
            return
        now = time.monotonic()
        due = [cb for t, cb in self._timers if t <= now]
        self._timers = [(t, cb) for t, cb in self._timers if t > now]
        for callback in due:
            try:
                callback()
            except Exception:
                traceback.print_exc()

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            _send_for_a_while(conn.fd, conn.outbuf, 1.0)
            os.close(conn.fd)
        if self._oom is not None:
            self._oom.close()
        if self._io is not None:
            self._io.close()
        self._poll.close()
        signal.set_wakeup_fd(-1)
        for fd in self._wake:
            os.close(fd)

    # -- children -------------------------------------------------------------------

    def _on_signal(self, _: int) -> None:
        try:
            while os.read(self._wake[0], 512):
                pass
        except OSError:
            pass
        self._reap()

    def _reap(self) -> None:
        self._children.reap()

    def _watch_child(self, pid: int, handler: Callable[[int], None], *, adopted: bool) -> None:
        """`handler(wait status)` once `pid` is reaped (see procs.Children.watch); a failing
        handler is reported, and the other statuses still reach theirs."""
        self._children.watch(pid, lambda status: _guard(handler, status), adopted=adopted)

    # -- workers --------------------------------------------------------------------

    def _fork(
        self,
        job: workers.Job,
        done: Done,
        *,
        keep: tuple[int, ...] = (),
        exec_worker: bool = False,
        blocking: bool = True,
    ) -> int:
        """Run `job` in a worker; `done(result, error)` when its result has arrived.

        Only stream jobs need asyncio (`blocking=False`); the others call the
        runtime once or twice and wait, without an event loop (see workers.fork).
        """
        held = {*self._handlers, self._poll.fileno(), self._wake[1]}
        if self._io is not None:
            held.update(self._io.descriptors())
        if self._oom is not None and (watching := self._oom.fileno()) is not None:
            held.add(watching)
        pid, fd = workers.fork(
            job, close=held - set(keep), subreaper=exec_worker, blocking=blocking
        )
        buf = bytearray()

        def readable(_: int) -> None:
            body = None
            while True:
                try:
                    chunk = os.read(fd, READ_CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buf.extend(chunk)
                try:
                    body = protocol.take_frame(buf, protocol.MAX_RESPONSE)
                except protocol.ProtocolError:
                    break
                if body is not None:
                    break
            self._unwatch(fd)
            os.close(fd)
            _finish_job(self.id, pid, body, done)

        self._watch(fd, readable)
        if exec_worker:
            self._exec_workers.add(pid)
        self._watch_child(pid, lambda _: self._exec_workers.discard(pid), adopted=False)
        return pid

    # -- connections ----------------------------------------------------------------

    def _on_accept(self, _: int) -> None:
        while True:
            try:
                # The C-level accept (a descriptor), not socket.accept's Python layer.
                fd, _addr = self._listener._accept()  # type: ignore[attr-defined]
            except OSError:  # BlockingIOError: none left; EMFILE: try at the next event
                return
            os.set_blocking(fd, False)
            conn = Conn(fd)
            self._conns[conn.fd] = conn
            self._watch(conn.fd, lambda events, c=conn: self._on_conn(c, events))  # type: ignore[misc]

    def _on_conn(self, conn: Conn, events: int) -> None:
        if events & _OUT:
            self._flush(conn)
        if not conn.open or not events & (_IN | select.EPOLLHUP | select.EPOLLERR):
            return
        try:
            data = os.read(conn.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.inbuf += data
        try:
            while conn.open and not conn.close_when_flushed:
                msg = protocol.take_message(conn.inbuf, protocol.MAX_REQUEST)
                if msg is None:
                    return
                self._request(conn, msg)
        except protocol.ProtocolError:
            self._drop(conn)

    def _request(self, conn: Conn, msg: dict[str, Any]) -> None:
        rid, method = msg.get("id"), str(msg.get("method"))
        params = msg.get("params") or {}
        first, conn.first = conn.first, False
        try:
            if first and method in _STREAMS:
                self._stream(conn, rid, method, params)
                return
            handler = _METHODS.get(method)
            if handler is None:
                raise errors.InvalidArgument(f"shim {self.id}: unknown method {method!r}")
            handler(self, conn, rid, params)
        except Exception as e:
            errors.report(e)
            self._reply_error(conn, rid, e)
            if first and method in _STREAMS:
                conn.close_when_flushed = True
                self._flush(conn)

    def _reply(self, conn: Conn, rid: object, result: object) -> None:
        self._send(conn, protocol.encode(protocol.response(rid, result)))

    def _reply_error(self, conn: Conn, rid: object, exc: BaseException) -> None:
        self._send(conn, protocol.encode(protocol.error_response(rid, exc)))

    def _send(self, conn: Conn, data: bytes) -> None:
        if not conn.open:
            return
        pending = not conn.outbuf
        conn.outbuf += data
        if pending:
            self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        try:
            sent = os.write(conn.fd, conn.outbuf) if conn.outbuf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del conn.outbuf[:sent]
        if conn.outbuf:
            self._poll.modify(conn.fd, _IN | _OUT)
            return
        self._poll.modify(conn.fd, _IN)
        if conn.close_when_flushed:
            self._drop(conn)

    def _drop(self, conn: Conn) -> None:
        """The client left (or broke the protocol): forget its connection and pending waits."""
        self._release(conn)
        os.close(conn.fd)

    def _release(self, conn: Conn) -> None:
        conn.open = False
        self._unwatch(conn.fd)
        self._conns.pop(conn.fd, None)
        self._waiters = [w for w in self._waiters if w.conn is not conn]

    # -- queries --------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """The task's state as api.TaskState's wire form (fields left out take their defaults)."""
        log = self._io.log if self._io is not None else None
        log_errors = log.errors if log is not None else 0
        if self._exit is not None:
            return api.to_wire(exitfile.to_task_state(self.id, self._exit, log_errors=log_errors))
        return {
            "id": self.id,
            "status": self._status(),
            "pid": self._pid,
            "started_at_ns": self._started_at if self._started else 0,
            "log_errors": log_errors,
        }

    def _status(self) -> str:
        if self._exit is not None:
            return api.STOPPED
        return api.RUNNING if self._started else api.CREATED

    def _require(self, *allowed: str) -> None:
        if self._params is None:
            raise errors.NotFound(f"container {self.id} has no task")
        if allowed and (status := self._status()) not in allowed:
            raise errors.FailedPrecondition(f"container {self.id} is {status}")

    def _task(self) -> api.CreateParams:
        """The task's create request, decoded: for workers only (see the module doc)."""
        assert self._params is not None
        return self._params.decode()

    def _info(self, conn: Conn, rid: object, _: object) -> None:
        self._reply(conn, rid, {"id": self.id, "pid": os.getpid(), "version": VERSION})

    def _state(self, conn: Conn, rid: object, _: object) -> None:
        self._require()
        self._reply(conn, rid, self._snapshot())

    def _wait(self, conn: Conn, rid: object, params: object) -> None:
        timeout = _wait_timeout(params)
        self._require()
        if self._exit is not None:
            self._reply(conn, rid, self._snapshot())
            return
        waiter = Waiter(conn, rid)
        if timeout is not None:
            self._add_timer(timeout, lambda: self._wait_expired(waiter))
        self._waiters.append(waiter)

    def _wait_expired(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            error = errors.DeadlineExceeded(f"container {self.id} still running")
            self._reply_error(waiter.conn, waiter.rid, error)

    # -- signals and the log --------------------------------------------------------

    def _kill(self, conn: Conn, rid: object, params: object) -> None:
        p = api.from_wire(api.KillParams, params)
        self._require()
        if self._reaped:
            self._reply(conn, rid, None)
            return
        if self._oom is not None:
            self._oom.refresh()  # OOM kills elsewhere in the parent until now are not ours
        if p.all:
            self._kill_all(conn, rid, p.signal)
            return
        try:
            os.kill(self._pid, p.signal)
        except ProcessLookupError:
            pass
        except (OSError, ValueError) as e:
            raise errors.InvalidArgument(f"kill container {self.id}: {e}") from None
        self._reply(conn, rid, None)

    def _kill_all(self, conn: Conn, rid: object, sig: int) -> None:
        def done(_: object, error: BaseException | None) -> None:
            if error is not None and not (
                isinstance(error, errors.FailedPrecondition) and self._reaped
            ):
                self._reply_error(conn, rid, error)
            else:
                self._reply(conn, rid, None)

        self._fork_kill_all(sig, done)

    def _fork_kill_all(self, sig: int, done: Done) -> None:
        """`runc kill --all sig` in a worker."""
        self._fork(lambda: self._jobs.kill_all(self.id, self._dir, self._task(), sig), done)

    def _reopen_log(self, conn: Conn, rid: object, _: object) -> None:
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
        self._reply(conn, rid, None)

    # -- actions, one at a time -----------------------------------------------------

    def _enqueue(self, conn: Conn, rid: object, action: Callable[[], None]) -> None:
        self._actions.append((conn, rid, action))
        self._next_action()

    def _next_action(self) -> None:
        if self._busy or not self._actions:
            return
        self._busy = True
        conn, rid, action = self._actions.popleft()
        self._attempt(conn, rid, action)

    def _attempt(self, conn: Conn, rid: object, action: Callable[[], None]) -> None:
        """Run (part of) an action; an exception answers the request and ends the action."""
        try:
            action()
        except Exception as e:
            errors.report(e)
            self._reply_error(conn, rid, e)
            self._action_done()

    def _action_done(self) -> None:
        self._busy = False
        self._next_action()

    def _answer(self, conn: Conn, rid: object, error: BaseException | None) -> None:
        """End an action: its error, or the task's state."""
        if error is not None:
            self._reply_error(conn, rid, error)
        else:
            self._reply(conn, rid, self._snapshot())
        self._action_done()

    # -- create ---------------------------------------------------------------------

    def _create(self, conn: Conn, rid: object, params: object) -> None:
        p = _CreateRequest(params)
        if self._params is not None or self._deleted or self._creating:
            raise errors.AlreadyExists(f"container {self.id} already has a task")
        self._creating = True
        self._enqueue(conn, rid, lambda: self._do_create(conn, rid, p))

    def _do_create(self, conn: Conn, rid: object, p: _CreateRequest) -> None:
        try:
            io = stdio.ContainerIO(tty=p.tty, stdin=p.stdin, stdin_once=p.stdin_once, log=None)
        except BaseException:
            self._creating = False
            raise
        console: stdio.ConsoleSocket | None = None
        try:
            console = stdio.ConsoleSocket(f"{self._dir}/{CONSOLE}") if p.tty else None
            name = console.name if console is not None else None
            child = io.child_stdio()
            job = lambda: self._jobs.create(self.id, self._dir, p.decode(), child, name)  # noqa: E731
            self._fork(
                job,
                lambda r, e: self._created(conn, rid, p, io, console, r, e),
                keep=tuple(io.child),
            )
        except BaseException:
            io.close()
            if console is not None:
                console.close()
            self._creating = False
            raise
        io.close_child_ends()

    def _open_log(self, path: str) -> logger.LogWriter | None:
        if not path:
            return None
        try:
            return logger.LogWriter(path)
        except OSError as e:
            raise errors.FailedPrecondition(f"container {self.id}: log file {path}: {e}") from None

    def _created(
        self,
        conn: Conn,
        rid: object,
        p: _CreateRequest,
        io: stdio.ContainerIO,
        console: stdio.ConsoleSocket | None,
        result: Any,
        error: BaseException | None,
    ) -> None:
        try:
            if error is None:
                if console is not None:
                    io.set_master(console.receive_blocking(CONSOLE_TIMEOUT))
                # Opened once the worker has checked the request: a bad one leaves no file.
                io.log = self._open_log(p.log_path)
        except errors.Error as e:
            self._undo_create(conn, rid, p, io, str(result["rootfs"]), e)
            return
        finally:
            if console is not None:
                console.close()
        self._creating = False
        if error is not None:
            io.close()
            self._answer(conn, rid, error)
            return
        cgroup = result.get("cgroup")
        self._shares_pid_ns = bool(result.get("shares_pid_ns"))
        self._adopt(
            p, io, int(result["pid"]), str(result["rootfs"]), str(cgroup) if cgroup else None
        )
        self._answer(conn, rid, None)

    def _undo_create(
        self,
        conn: Conn,
        rid: object,
        p: _CreateRequest,
        io: stdio.ContainerIO,
        rootfs: str,
        error: BaseException,
    ) -> None:
        io.close()

        def undone(_: object, __: BaseException | None) -> None:
            self._creating = False
            self._answer(conn, rid, error)

        self._fork(lambda: self._jobs.undo_create(self.id, self._dir, p.decode(), rootfs), undone)

    def _adopt(
        self, p: _CreateRequest, io: stdio.ContainerIO, pid: int, rootfs: str, cgroup: str | None
    ) -> None:
        self._params, self._io, self._pid, self._rootfs = p, io, pid, rootfs
        for fd in io.outputs:
            self._watch(fd, lambda _, fd=fd: self._on_output(fd))  # type: ignore[misc]
        self._cgroup = cgroup
        self._oom = oom.Watch.of(self._cgroup)
        if self._oom is not None and (watching := self._oom.fileno()) is not None:
            self._watch(watching, self._on_oom_event)
        self._watch_child(pid, self._on_init_exit, adopted=True)

    def _on_oom_event(self, _: int) -> None:
        assert self._oom is not None
        watching = self._oom.fileno()
        if not self._oom.changed() and watching is not None:
            self._unwatch(watching)

    # -- output and exit ------------------------------------------------------------

    def _on_output(self, fd: int) -> None:
        io = self._io
        assert io is not None
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every descriptor of the pty's slave side is closed
            data = b""
        if data:
            stream = io.outputs[fd]
            if io.log is not None:
                io.log.write(stream, data)
            if io.feeds:  # most containers have no attachment: no list built per read
                channel = api.CH_STDERR if stream == "stderr" else api.CH_STDOUT
                for feed in io.live_feeds():
                    feed.send(channel, data)
            return
        self._unwatch(fd)
        io.end_output(fd)
        if self._reaped and not io.outputs:
            self._record_exit()

    def _on_init_exit(self, status: int) -> None:
        self._reaped = True
        self._wait_status = status
        self._finished = time.time_ns()
        # Before draining the output: a systemd scope's cgroup goes with its last process.
        if self._oom is not None:
            if (watching := self._oom.fileno()) is not None:
                self._unwatch(watching)
            count: int | None = self._oom.final(sigkilled=_sigkilled(status))
        else:
            count = oom.oom_kill_count(self._cgroup) if self._cgroup is not None else None
        self._oom_killed = bool(count)
        if self._shares_pid_ns and self._params is not None:
            # Nothing ends what the init left behind in a shared PID namespace: they would
            # hold its output open and live on in its cgroup. Killed, as containerd does.
            self._fork_kill_all(signal.SIGKILL, _ignore_result)
        assert self._io is not None
        if self._io.outputs:
            self._add_timer(DRAIN_TIMEOUT, self._record_exit)
        else:
            self._record_exit()

    def _record_exit(self) -> None:
        if self._exit is not None:
            return
        record = exitfile.ExitStatus(
            pid=self._pid,
            exit_code=procs.exit_code_of(self._wait_status),
            started_at_ns=self._started_at if self._started else 0,
            finished_at_ns=self._finished,
            oom_killed=self._oom_killed,
            reason=api.REASON_OOM if self._oom_killed else "",
        )
        # Durable before anyone can learn about it.
        try:
            exitfile.write(self._dir, record)
        except OSError as e:
            # Still report the exit (waiters must not hang), but say it may be lost.
            traceback.print_exc()
            record = dataclasses.replace(record, message=f"exit status not persisted: {e}")
        self._exit = record
        assert self._io is not None
        for feed in self._io.live_feeds():
            feed.finish(record.exit_code)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            self._reply(w.conn, w.rid, self._snapshot())
        after, self._after_exit = self._after_exit, []
        for callback in after:
            callback()

    # -- start, update, delete ------------------------------------------------------

    def _start(self, conn: Conn, rid: object, _: object) -> None:
        self._enqueue(conn, rid, lambda: self._do_start(conn, rid))

    def _do_start(self, conn: Conn, rid: object) -> None:
        self._require(api.CREATED)
        # Taken before `runc start`: the process may exit before it returns.
        self._started_at = time.time_ns()
        self._started = True

        def done(_: object, error: BaseException | None) -> None:
            if error is not None:
                self._started = False
            self._answer(conn, rid, error)

        self._fork(lambda: self._jobs.start(self.id, self._dir, self._task()), done)

    def _update(self, conn: Conn, rid: object, params: object) -> None:
        self._enqueue(conn, rid, lambda: self._do_update(conn, rid, params))

    def _do_update(self, conn: Conn, rid: object, params: object) -> None:
        self._require(api.CREATED, api.RUNNING)

        def done(_: object, error: BaseException | None) -> None:
            if error is not None:
                self._reply_error(conn, rid, error)
            else:
                self._reply(conn, rid, None)
            self._action_done()

        job = lambda: self._jobs.update(  # noqa: E731
            self.id, self._dir, self._task(), api.from_wire(api.UpdateParams, params).resources
        )
        self._fork(job, done)

    def _delete(self, conn: Conn, rid: object, _: object) -> None:
        self._enqueue(conn, rid, lambda: self._do_delete(conn, rid))

    def _do_delete(self, conn: Conn, rid: object) -> None:
        if self._params is None:
            self._deleted = True
            recorded = exitfile.read(self._dir)
            final = (
                exitfile.to_task_state(self.id, recorded)
                if recorded is not None
                else api.TaskState(id=self.id, status=api.STOPPED)
            )
            self._reply(conn, rid, api.to_wire(final))
            self._done = True
            self._action_done()
            return
        if not self._reaped:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._exit is None:
            self._after_exit.append(
                lambda: self._attempt(conn, rid, lambda: self._teardown(conn, rid))
            )
            return
        self._teardown(conn, rid)

    def _teardown(self, conn: Conn, rid: object) -> None:
        for pid in self._exec_workers:  # they kill their execs
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        def done(_: object, error: BaseException | None) -> None:
            if error is None:
                assert self._io is not None
                for fd in list(self._io.outputs):
                    self._unwatch(fd)
                self._io.close()
                self._io = None
                self._deleted = True
                self._done = True
            self._answer(conn, rid, error)

        job = lambda: self._jobs.teardown(self.id, self._dir, self._task(), self._rootfs)  # noqa: E731
        self._fork(job, done)

    # -- exec and attach ------------------------------------------------------------

    def _exec_sync(self, conn: Conn, rid: object, params: object) -> None:
        self._require(api.RUNNING)

        def done(result: object, error: BaseException | None) -> None:
            if error is not None:
                self._reply_error(conn, rid, error)
            else:
                self._reply(conn, rid, result)

        job = lambda: self._jobs.exec_sync(  # noqa: E731
            self.id, self._dir, self._task(), api.from_wire(api.ExecSyncParams, params)
        )
        self._fork(job, done, exec_worker=True)

    def _stream(self, conn: Conn, rid: object, method: str, params: object) -> None:
        if method == "attach":
            self._attach(conn, rid, api.from_wire(api.AttachParams, params))
            return
        p = api.from_wire(api.ExecStreamParams, params)
        self._require(api.RUNNING)
        leftover = bytes(conn.inbuf)
        self._release(conn)
        try:
            job = lambda: self._jobs.exec_stream(  # noqa: E731
                self.id, self._dir, self._task(), conn.fd, leftover, rid, p
            )
            self._fork(job, _ignore_result, keep=(conn.fd,), exec_worker=True, blocking=False)
        finally:
            os.close(conn.fd)

    def _attach(self, conn: Conn, rid: object, p: api.AttachParams) -> None:
        self._require(api.CREATED, api.RUNNING)
        io = self._io
        assert io is not None
        feed_r, feed_w = os.pipe2(os.O_CLOEXEC)
        back_r, back_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        feed = attach.Feed(feed_w, p)
        ends = attach.Ends(feed_r, back_w, io.stdin_target if p.stdin else None, io.master)
        leftover = bytes(conn.inbuf)
        self._release(conn)
        try:
            job = lambda: self._jobs.attach_stream(conn.fd, leftover, rid, p, ends)  # noqa: E731
            self._fork(job, _ignore_result, keep=(conn.fd, *ends.descriptors()), blocking=False)
        except BaseException:
            feed.close()
            os.close(back_r)
            raise
        finally:
            os.close(conn.fd)
            os.close(feed_r)
            os.close(back_w)
        io.feeds.append(feed)
        self._watch(back_r, lambda _: self._on_back(back_r, feed))

    def _on_back(self, fd: int, feed: attach.Feed) -> None:
        """An attachment released stdin (one byte), or its worker is gone (end of file)."""
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if self._io is not None and self._io.stdin_once:
                self._io.close_stdin()
            return
        self._unwatch(fd)
        os.close(fd)
        feed.close()


def _finish_job(shim_id: str, pid: int, body: bytes | None, done: Done) -> None:
    try:
        out = protocol.decode_body(body) if body is not None else None
    except protocol.ProtocolError:
        out = None
    if not isinstance(out, dict):
        done(None, errors.Unavailable(f"shim {shim_id}: worker {pid} ended without a result"))
    elif "error" in out:
        done(None, protocol.error_from_wire(out["error"]))
    else:
        done(out.get("result"), None)


def _field(params: dict[str, Any], name: str, kind: type[T], default: T) -> T:
    value = params.get(name, default)
    if type(value) is not kind:
        raise errors.InvalidArgument(
            f"CreateParams.{name}: expected {kind.__name__}, got {value!r:.80}"
        )
    return value


def _wait_timeout(params: object) -> float | None:
    """api.WaitParams' one field, checked as from_wire would (a number or null)."""
    if not isinstance(params, dict):
        raise errors.InvalidArgument("WaitParams: expected an object")
    timeout = params.get("timeout")
    if timeout is None or type(timeout) in (int, float):
        return timeout
    raise errors.InvalidArgument(f"WaitParams.timeout: expected float, got {timeout!r:.80}")


def _ignore_result(_: object, __: BaseException | None) -> None:
    pass


def _ignore(*_: object) -> None:
    pass


_sigchld_handled = False


def _handle_sigchld() -> None:
    """Give SIGCHLD a handler, so that it reaches the wakeup descriptor; once per
    process image: the template's rehearsal installs it, and its forks inherit it."""
    global _sigchld_handled
    if not _sigchld_handled:
        signal.signal(signal.SIGCHLD, _ignore)
        _sigchld_handled = True


def _send_for_a_while(fd: int, data: bytearray, seconds: float) -> None:
    """Write what is left for a client before exiting, giving up after `seconds`."""
    deadline = time.monotonic() + seconds
    try:
        while data and select.select((), (fd,), (), max(0.0, deadline - time.monotonic()))[1]:
            del data[: os.write(fd, data)]
    except OSError:
        pass


_METHODS: dict[str, Callable[[Keeper, Conn, object, Any], None]] = {
    "info": Keeper._info,
    "state": Keeper._state,
    "wait": Keeper._wait,
    "kill": Keeper._kill,
    "reopen_log": Keeper._reopen_log,
    "create": Keeper._create,
    "start": Keeper._start,
    "update": Keeper._update,
    "delete": Keeper._delete,
    "exec_sync": Keeper._exec_sync,
}


def _guard(handler: Callable[[int], None], arg: int) -> None:
    """A failing handler is reported to shim.log; the keeper carries on."""
    try:
        handler(arg)
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()


def _sigkilled(wait_status: int) -> bool:
    return os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
