"""What the workloads need from a runtime under test, and the pieces every launcher shares."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

import grpc

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from e2e.bench import procfs


class Runtime(Protocol):
    """One CRI runtime under test.

    `client` is shared by every worker thread (a gRPC channel multiplexes calls, as the
    kubelet's single connection does). Pids are None/empty for a runtime we did not start
    and cannot see; the memory and CPU figures then record "skipped".
    """

    name: str
    endpoint: str
    cgroup_parent: str  # sent in every PodSandboxConfig, so its containers stay in one subtree

    @property
    def client(self) -> CriClient:
        """The shared CRI client."""
        ...

    def daemon_pid(self) -> int | None:
        """The pid of the process answering CRI."""
        ...

    def helper_pids(self) -> list[int]:
        """Long-lived helpers of the daemon that are not per-container shims (berth's template)."""
        ...

    def shim_pids(self) -> list[int]:
        """The per-pod / per-container shims of this runtime, and only of this runtime."""
        ...

    def disk_usage(self) -> int:
        """Bytes used below the runtime's root (to check RemoveImage frees content)."""
        ...

    def log_path(self) -> Path | None: ...


def wait_ready(client: CriClient, timeout: float) -> None:
    """Until Status reports RuntimeReady and NetworkReady; TimeoutError with the last answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status = client.runtime.Status(api_pb2.StatusRequest(), timeout=2).status
        except grpc.RpcError as exc:
            last = f"{exc.code().name}: {exc.details()}"
        else:
            ready = {c.type: c.status for c in status.conditions}
            if ready.get("RuntimeReady") and ready.get("NetworkReady"):
                return
            last = str(status).replace("\n", " ")
        time.sleep(0.1)  # the daemon offers no readiness event to wait on
    raise TimeoutError(f"{client.endpoint} not ready after {timeout}s: {last}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def kill_pids(pids: list[int], must_contain: str) -> list[int]:
    """SIGKILL each pid whose command line still mentions `must_contain` (never a stranger)."""
    killed = []
    for pid in pids:
        if must_contain in " ".join(procfs.cmdline(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def tree_bytes(root: Path) -> int:
    """Allocated bytes of the files below `root` (hard links once), without following links."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def runc_leftovers(runc_root: Path) -> list[str]:
    """Force-delete every container runc still knows under `runc_root`; their ids."""
    if not runc_root.is_dir():
        return []
    listed = subprocess.run(
        ["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
    )
    ids = listed.stdout.split()
    for cid in ids:
        subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", cid], capture_output=True)
    return ids
