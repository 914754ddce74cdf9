"""berthd under test: a subprocess on a private root, state dir, socket and CNI bridge.

Logs at `info` (debug logging would cost berth time containerd does not pay). Its shims are
the pids in `<state>/shims/*/shim.pid` whose command line names our state dir (they are
forked from the shim template, so they carry its command line).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from e2e.bench import cleanup, network, procfs
from e2e.bench.runtime import kill_pids, runc_leftovers, tree_bytes, wait_ready
from tests.support.berthd import Berthd

READY_TIMEOUT = 60.0


class BerthRuntime:
    name = "berth"

    def __init__(self, base: Path, *, registry_host: str, cgroup_parent: str) -> None:
        self.base = base
        self.net = network.pick_net("berth", base / "ipam")
        self.cgroup_parent = cgroup_parent
        network.write_conf_dir(base / "net.d", self.net)
        self.daemon = Berthd(
            base,
            {
                "log_level": "info",
                "cni": {"conf_dir": str(base / "net.d")},
                "registry": {"insecure": [registry_host], "config_path": ""},
            },
        )
        self.endpoint = f"unix://{self.daemon.socket}"
        self._client: CriClient | None = None

    @property
    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(self.endpoint, timeout=180)
        return self._client

    def start(self) -> None:
        self.daemon.start(timeout=READY_TIMEOUT)
        wait_ready(self.client, READY_TIMEOUT)

    def daemon_pid(self) -> int | None:
        return self.daemon.proc.pid if self.daemon.proc else None

    def helper_pids(self) -> list[int]:
        """The shim template: berthd's child whose command line names `<state>/shim-template`
        (the shims it forks carry the same command line, but are not berthd's children)."""
        marker, daemon = str(self.daemon.state / "shim-template"), self.daemon_pid()
        return [
            p
            for p in procfs.pids()
            if marker in " ".join(procfs.cmdline(p)) and procfs.parent_pid(p) == daemon
        ]

    def shim_pids(self) -> list[int]:
        out = []
        state = str(self.daemon.state)
        for pid_file in (self.daemon.state / "shims").glob("*/shim.pid"):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if state in " ".join(procfs.cmdline(pid)):
                out.append(pid)
        return out

    def disk_usage(self) -> int:
        return tree_bytes(self.daemon.root)

    def log_path(self) -> Path | None:
        return self.daemon.log_path

    def remove_all_pods(self) -> None:
        rt = self.client.runtime
        for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items:
            rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        try:
            self.daemon.stop(timeout=30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()

    def sweep(self) -> list[str]:
        """After stop: remove what berthd left running or mounted; says what it found."""
        found = [f"runc container {c}" for c in runc_leftovers(self.daemon.state / "runtimes/runc")]
        shims = self.shim_pids()
        found += [f"shim pid {p}" for p in kill_pids(shims, str(self.daemon.state))]
        found += cleanup.unmount_under(self.base)
        network.delete_bridge(self.net.bridge)
        return found
