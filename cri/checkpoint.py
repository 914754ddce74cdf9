"""CheckpointContainer, CheckpointPod and RestorePod: what berth answers, and why.

Checkpointing needs CRIU on the host and a checkpoint/restore path through the shim
(``runc checkpoint``/``runc restore`` with the image, the rootfs diff and the container's
config packed in an archive, as CRI-O and containerd write them). berth answers:

- NOT_FOUND for an unknown container or pod, as every other RPC does;
- FAILED_PRECONDITION when the host cannot checkpoint at all: no ``criu`` on PATH, or
  ``criu check`` failing (the CRIU in Debian 12, 3.17, fails on this VM's 6.x kernel with
  "vdso: Unexpected rt vDSO area bounds"). The message names what is missing;
- UNIMPLEMENTED when CRIU works: the shim has no checkpoint/restore path yet, and saying so
  beats a half-written archive.

The kubelet (ContainerCheckpoint, beta) passes the error on to the user of its checkpoint API.
The host check runs ``criu check`` once per berthd process, in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess

from cri import errors

CRIU_CHECK_TIMEOUT = 30.0


@functools.cache
def criu_problem(criu: str = "criu") -> str | None:
    """Why this host cannot checkpoint, or None if CRIU is present and ``criu check`` passes."""
    path = shutil.which(criu)
    if path is None:
        return f"CRIU is not installed: no {criu!r} on PATH"
    try:
        result = subprocess.run(
            [path, "check"], capture_output=True, text=True, timeout=CRIU_CHECK_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"CRIU at {path} could not be run: {exc}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        why = lines[0] if lines else f"exit status {result.returncode}"
        return f"CRIU at {path} cannot checkpoint on this host: 'criu check' failed: {why}"
    return None


async def refuse(what: str) -> None:
    """Raise the error that explains why ``what`` cannot be done on this node."""
    problem = await asyncio.to_thread(criu_problem)
    if problem is not None:
        raise errors.FailedPrecondition(f"cannot {what}: {problem}")
    raise errors.Unimplemented(
        f"cannot {what}: berth has no checkpoint/restore support in its shim yet "
        "(CRIU is available on this host)"
    )
