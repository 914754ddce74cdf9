"""Two tiny static programs compiled at build time with the host's gcc.

`pause` is what a sandbox's pause container runs: it sleeps until SIGINT or SIGTERM and reaps
children. `nonewprivs` prints its effective uid; installed setuid root, it shows whether
no_new_privs stopped the kernel from honouring the setuid bit.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Final

PAUSE_C: Final = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""

NONEWPRIVS_C: Final = r"""
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
"""


class CompileError(Exception):
    """gcc is missing or refused the source."""


def compile_static(source: str, name: str, out_dir: Path) -> Path:
    """`source` compiled with `gcc -static`, cached in `out_dir` by the source's hash."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    binary = out_dir / f"{name}-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise CompileError(f"gcc is needed to build {name} (apt-get install gcc libc6-dev)")
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{name}-{digest}.c"
    src.write_text(source)
    scratch = binary.with_suffix(".tmp")
    done = subprocess.run(
        [gcc, "-static", "-Os", "-s", "-o", str(scratch), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise CompileError(f"gcc failed for {name}: {done.stderr.strip()}")
    scratch.rename(binary)
    return binary
