"""Keeping track of every process a run starts, so cleanup can end exactly those.

The run makes itself a child subreaper: shims that daemonize (berth-shim, containerd's runc
shim) and container processes orphaned by them are re-parented to it instead of to init, so
"every descendant of this process" is exactly "everything this run started". They are ended
by PID, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

PR_SET_CHILD_SUBREAPER: Final = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def parent_of(stat_line: str) -> int:
    """The ppid field of a /proc/<pid>/stat line (the command name may hold spaces and ')')."""
    return int(stat_line.rpartition(")")[2].split()[1])


def is_zombie(stat_line: str) -> bool:
    return stat_line.rpartition(")")[2].split()[0] == "Z"


def _parents(proc: Path = Path("/proc")) -> dict[int, int]:
    """ppid of every live process (zombies are exited already: they only need reaping)."""
    out: dict[int, int] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if not is_zombie(stat):
                    out[int(entry.name)] = parent_of(stat)
    return out


def descendants(root: int | None = None, parents: dict[int, int] | None = None) -> list[int]:
    """PIDs below `root` (default: this process), children before their own children."""
    parents = _parents() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    order, queue = [], [os.getpid() if root is None else root]
    while queue:
        for child in sorted(children.get(queue.pop(0), [])):
            order.append(child)
            queue.append(child)
    return order


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def reap() -> None:
    """Collect every exited child (orphans re-parented to us included)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def end_descendants(grace: float = 5.0) -> list[int]:
    """SIGTERM every live descendant, SIGKILL those left after `grace` seconds; returns the
    PIDs. Call it once no Popen of ours still needs its child's exit status: it reaps all."""
    reap()
    pids = descendants()
    if not pids:
        return []
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and descendants():
        reap()
        time.sleep(0.1)  # polling: orphans' exits can't be waited on as a group
    _signal_all(descendants(), signal.SIGKILL)
    time.sleep(0.1)
    reap()
    return pids


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C does, so `finally` cleans up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Cleanup runs to the end: Ctrl-C and SIGTERM are ignored meanwhile."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def zombie_children(proc: Path = Path("/proc")) -> list[int]:
    """This process's children that have exited but not been reaped."""
    me = os.getpid()
    out = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if is_zombie(stat) and parent_of(stat) == me:
                    out.append(int(entry.name))
    return out


class OrphanReaper:
    """Reaps, every few seconds, the orphans re-parented to this subreaper (exited shims),
    but never a child a Popen of ours waits for: those are spawned inside `spawning()`, which
    holds off the reaper until their PIDs are registered as kept."""

    def __init__(self, interval: float = 2.0) -> None:
        self._keep: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="orphan-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    @contextlib.contextmanager
    def spawning(self) -> Iterator[Callable[[int], None]]:
        """Hold the reaper off while starting processes; call the yielded `keep(pid)` for each."""
        with self._lock:
            yield self._keep.add

    def reap_once(self) -> list[int]:
        reaped = []
        with self._lock:
            for pid in zombie_children():
                if pid not in self._keep:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                        reaped.append(pid)
        return reaped

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self.reap_once()
