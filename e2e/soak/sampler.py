"""berthd's figures over time, read from /proc every few seconds on a thread of its own.

Each sample: seconds since the soak began, the phase, berthd's RSS and PSS
(``/proc/<pid>/smaps_rollup``), its CPU time (utime + stime), open file descriptors, threads,
the live shims of its state dir, the pods and containers the soak keeps, the load average.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from e2e.bench import procfs
from tests.support.failpoint_node import shim_processes


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    t: float  # seconds since the soak began
    phase: str
    rss_mib: float
    pss_mib: float
    cpu_s: float  # berthd's utime + stime so far
    fds: int
    threads: int
    shims: int
    pods: int
    containers: int
    load1: float


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def thread_count(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in text.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


class Sampler:
    """Takes a `Sample` every ``interval`` seconds until stopped; ``phase`` and ``population``
    are read at each sample; ``on_sample`` is called with each (progress lines)."""

    def __init__(
        self,
        pid: int,
        state: Path,
        interval: float,
        population: Callable[[], tuple[int, int]],
        began: float,
    ) -> None:
        self.pid = pid
        self.state = state
        self.interval = interval
        self.population = population
        self.began = began
        self.phase = "setup"
        self.samples: list[Sample] = []
        self.on_sample: Callable[[Sample], None] = lambda _: None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def take(self) -> Sample:
        memory = procfs.memory(self.pid)
        pods, containers = self.population()
        sample = Sample(
            t=round(time.monotonic() - self.began, 2),
            phase=self.phase,
            rss_mib=round(memory.rss_kb / 1024, 2) if memory else 0.0,
            pss_mib=round(memory.pss_kb / 1024, 2) if memory else 0.0,
            cpu_s=procfs.cpu_seconds(self.pid) or 0.0,
            fds=fd_count(self.pid),
            threads=thread_count(self.pid),
            shims=len(shim_processes(self.state)),
            pods=pods,
            containers=containers,
            load1=os.getloadavg()[0],
        )
        with self._lock:
            self.samples.append(sample)
        return sample

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.on_sample(self.take())
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)
