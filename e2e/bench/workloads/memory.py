"""Memory of a runtime's processes at one moment: the daemon, its helpers, its shims."""

from __future__ import annotations

from dataclasses import dataclass

from e2e.bench import procfs
from e2e.bench.procfs import Memory
from e2e.bench.runtime import Runtime

MIB = 1024.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySnapshot:
    daemon: Memory | None
    helpers: tuple[Memory, ...]
    shims: tuple[Memory, ...]

    @property
    def shim_rss_mib(self) -> float:
        return sum(m.rss_kb for m in self.shims) / MIB

    @property
    def shim_pss_mib(self) -> float:
        return sum(m.pss_kb for m in self.shims) / MIB

    @property
    def shim_private_dirty_mib(self) -> float:
        return sum(m.private_dirty_kb for m in self.shims) / MIB

    @property
    def total_pss_mib(self) -> float:
        own = [self.daemon] if self.daemon else []
        return sum(m.pss_kb for m in (*own, *self.helpers, *self.shims)) / MIB


def _read(pids: list[int]) -> tuple[Memory, ...]:
    return tuple(m for m in (procfs.memory(p) for p in pids) if m is not None)


def snapshot(runtime: Runtime) -> MemorySnapshot:
    pid = runtime.daemon_pid()
    return MemorySnapshot(
        daemon=procfs.memory(pid) if pid else None,
        helpers=_read(runtime.helper_pids()),
        shims=_read(runtime.shim_pids()),
    )
