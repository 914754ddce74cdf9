"""The run is a subreaper: orphans are reaped, kept children keep their exit status, and
cleanup ends every live descendant. Each case runs in its own interpreter so this pytest
process never becomes a subreaper."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCENARIO = textwrap.dedent(
    """
    import subprocess, time
    from e2e.critest_support import procs

    procs.become_subreaper()
    reaper = procs.OrphanReaper(interval=3600)
    # An orphan: its parent exits at once, so it is re-parented to us, then exits itself.
    subprocess.run(["sh", "-c", "(sleep 0.2; exit 0) & exit 0"], check=True)
    with reaper.spawning() as keep:
        kept = subprocess.Popen(["sh", "-c", "exit 7"])
        keep(kept.pid)
    deadline = time.monotonic() + 10
    while len(procs.zombie_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    reaped = reaper.reap_once()
    assert len(reaped) == 1 and kept.pid not in reaped, reaped
    assert kept.wait() == 7
    # A daemonized descendant is still ours to end at cleanup.
    subprocess.run(["sh", "-c", "sleep 600 & exit 0"], check=True)
    ended = procs.end_descendants(grace=5)
    assert len(ended) == 1, ended
    assert procs.descendants() == []
    print("ok")
    """
)


def test_orphans_are_reaped_kept_children_are_not_and_cleanup_ends_the_rest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[3],  # the checkout, so `e2e` imports
    )
    assert done.stdout.strip() == "ok", done.stderr
