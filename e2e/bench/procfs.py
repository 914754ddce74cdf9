"""Process figures from /proc: RSS, peak RSS, PSS, CPU time, command lines, a peak sampler.

The parsers take file text so they can be tested without processes; the readers return None
for a process that is gone (a shim may exit between listing and reading).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_kb_fields(text: str) -> dict[str, int]:
    """`Key:  123 kB` lines (status, smaps_rollup) as {key: kB}; other lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        words = rest.split()
        if sep and len(words) == 2 and words[1] == "kB" and words[0].isdigit():
            out[key.strip()] = int(words[0])
    return out


def parse_stat_ticks(text: str, *, children: bool = False) -> int:
    """utime + stime (clock ticks) from /proc/PID/stat; the comm may contain spaces and ')'.

    With `children`, also cutime + cstime: the CPU of the children it has waited for.
    """
    after_comm = text.rsplit(")", 1)[1].split()
    # after_comm[0] is field 3 (state); utime, stime, cutime, cstime are fields 14 to 17.
    fields = after_comm[11:15] if children else after_comm[11:13]
    return sum(int(f) for f in fields)


def parse_stat_ppid(text: str) -> int:
    """The parent pid (field 4) from /proc/PID/stat."""
    return int(text.rsplit(")", 1)[1].split()[1])


def parse_cmdline(raw: bytes) -> list[str]:
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """Kilobytes, as the kernel reports them."""

    rss_kb: int
    pss_kb: int
    private_dirty_kb: int = 0  # written by this process alone: what it costs beyond the shared


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def rss_kb(pid: int) -> int | None:
    text = _read(PROC / str(pid) / "status")
    return None if text is None else parse_kb_fields(text).get("VmRSS")


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM: the peak RSS since start or since the last `reset_peak`."""
    text = _read(PROC / str(pid) / "status")
    return None if text is None else parse_kb_fields(text).get("VmHWM")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (clear_refs value 5, Linux >= 4.0); False if refused."""
    try:
        (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory(pid: int) -> Memory | None:
    text = _read(PROC / str(pid) / "smaps_rollup")
    if text is None:
        return None
    fields = parse_kb_fields(text)
    return Memory(
        rss_kb=fields.get("Rss", 0),
        pss_kb=fields.get("Pss", 0),
        private_dirty_kb=fields.get("Private_Dirty", 0),
    )


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """CPU seconds `pid` used; with `children`, also those of the children it reaped."""
    text = _read(PROC / str(pid) / "stat")
    return None if text is None else parse_stat_ticks(text, children=children) / CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    text = _read(PROC / str(pid) / "stat")
    return None if text is None else parse_stat_ppid(text)


def cmdline(pid: int) -> list[str]:
    try:
        return parse_cmdline((PROC / str(pid) / "cmdline").read_bytes())
    except OSError:
        return []


def pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


class PeakSampler:
    """Samples a process's VmRSS every `interval` seconds on a thread; `peak_kb` is the max.

    Used beside `reset_peak`/VmHWM where the kernel refuses clear_refs, and to watch RSS over
    a window (the peak under load).
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kb(self.pid)
            if value is not None:
                self.peak_kb = max(self.peak_kb, value)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
