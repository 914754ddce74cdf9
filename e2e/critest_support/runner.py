"""Running the critest binary against one endpoint, its output shown and logged."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Final

EXIT_NO_CRITEST: Final = 3
WHERE_CRITEST_COMES_FROM: Final = """\
critest is not on PATH (or --critest PATH does not exist).
It is the CRI conformance suite of kubernetes-sigs/cri-tools. With a Go toolchain:
    git clone https://github.com/kubernetes-sigs/cri-tools && cd cri-tools
    make critest        # builds build/bin/linux/amd64/critest (vendored deps, no downloads)
    install build/bin/linux/amd64/critest /usr/local/bin/
then run this again (or pass --critest /path/to/critest)."""


def find_critest(explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    found = shutil.which("critest")
    return Path(found) if found else None


def critest_argv(
    binary: Path, endpoint: str, json_report: Path, extra: Sequence[str] = ()
) -> list[str]:
    """critest's command line; `extra` (focus, skip, parallel, ...) is passed through as given."""
    return [
        str(binary),
        f"--runtime-endpoint={endpoint}",
        f"--image-endpoint={endpoint}",
        f"--ginkgo.json-report={json_report}",
        "--ginkgo.no-color",
        *extra,
    ]


def run_critest(
    argv: Sequence[str],
    log_path: Path,
    spawning: Callable[[], AbstractContextManager[Callable[[int], None]]] | None = None,
) -> int:
    """Run critest, copying its output to the terminal and to `log_path`; its exit code.

    Interrupted (Ctrl-C, SIGTERM), critest gets SIGINT so ginkgo runs its cleanup nodes, and
    is killed if it has not exited 60 seconds later; the interrupt is then re-raised.
    `spawning` (OrphanReaper.spawning) keeps a reaper of orphans off critest's exit status.
    """
    with log_path.open("ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        with spawning() if spawning else nullcontext(_ignore) as keep:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            keep(proc.pid)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            return proc.wait()
        except BaseException:
            _interrupt(proc)
            raise


def _ignore(pid: int) -> None:
    pass


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
