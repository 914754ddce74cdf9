"""Where berthd's memory goes, for diagnosing a growth the soak found (``--trace-memory``).

berthd then runs under this module: tracemalloc on (``BERTH_SOAK_TRACE_FRAMES`` frames a
traceback), and SIGUSR2 writes a snapshot to ``BERTH_SOAK_TRACE_DIR/snap-<n>.pickle``. The
soak asks for one after the warm-up and one at the end of the churn, and prints the
tracebacks whose allocations grew most in between. tracemalloc costs memory and time of its
own: a traced run's RSS and CPU figures are not the untraced berthd's.

    python -m e2e.soak.tracemem --config F    # berthd, traced (what the soak runs)
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType

DIR_ENV = "BERTH_SOAK_TRACE_DIR"
FRAMES_ENV = "BERTH_SOAK_TRACE_FRAMES"
COMMAND = [sys.executable, "-m", "e2e.soak.tracemem"]


def _dump(_signum: int, _frame: FrameType | None) -> None:
    where = Path(os.environ[DIR_ENV])
    n = len(list(where.glob("snap-*.pickle")))
    tmp = where / f".snap-{n}.tmp"
    tracemalloc.take_snapshot().dump(str(tmp))
    tmp.rename(where / f"snap-{n}.pickle")


def request(pid: int, where: Path, timeout: float = 120.0) -> Path | None:
    """Ask the traced berthd ``pid`` for a snapshot; its path once written (None: timed out)."""
    n = len(list(where.glob("snap-*.pickle")))
    os.kill(pid, signal.SIGUSR2)
    path = where / f"snap-{n}.pickle"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return path


def growth(first: Path, second: Path, top: int = 15) -> list[str]:
    """The tracebacks whose allocations grew most from ``first`` to ``second``."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ]
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(second)).filter_traces(ignore)
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename")
    )
    lines = [f"traced memory grew {total / 1024:+.1f} KiB; the largest growths:"]
    for stat in new.compare_to(old, "traceback")[:top]:
        lines.append(
            f"  {stat.size_diff / 1024:+9.1f} KiB in {stat.count_diff:+d} blocks "
            f"(now {stat.size / 1024:.1f} KiB in {stat.count})"
        )
        lines += [
            f"      {line}" for line in stat.traceback.format(limit=12, most_recent_first=True)
        ]
    return lines


def main() -> None:
    import cri.daemon  # noqa: F401  (imports untraced: ten times faster, and never a growth)

    tracemalloc.start(int(os.environ.get(FRAMES_ENV, "12")))
    signal.signal(signal.SIGUSR2, _dump)
    sys.argv = ["cri.daemon", *sys.argv[1:]]
    runpy.run_module("cri.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
