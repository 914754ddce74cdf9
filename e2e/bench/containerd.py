"""Debian's containerd 1.6 under test, started from a config of our own (containerd_config).

Its shims are the `containerd-shim-runc-v2` processes whose `-address` is our socket: a shim
of any other containerd on the machine is never counted, nor touched. containerd 1.6 puts
shim sockets in /run/containerd/s whatever its state dir; that directory is removed at the
end only if this run created it and it is empty.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from e2e.bench import cleanup, network, procfs
from e2e.bench import containerd_config as cc
from e2e.bench.runtime import kill_pids, runc_leftovers, stop_process, tree_bytes, wait_ready
from tests.support.berthd import write_config

BINARY = "/usr/bin/containerd"
SHIM = "containerd-shim-runc-v2"
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))
READY_TIMEOUT = 60.0
NAMESPACE = "k8s.io"


class ContainerdRuntime:
    name = "containerd"

    def __init__(
        self, base: Path, *, registry_host: str, sandbox_image: str, cgroup_parent: str
    ) -> None:
        self.layout = cc.ContainerdLayout(base=base)
        self.net = network.pick_net("ctrd", base / "ipam")
        self.cgroup_parent = cgroup_parent
        self.registry_host = registry_host
        self.sandbox_image = sandbox_image
        self.endpoint = f"unix://{self.layout.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: CriClient | None = None
        self._preexisting = {d for d in SHIM_SOCKET_DIRS if d.exists()}

    @property
    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(self.endpoint, timeout=180)
        return self._client

    def write_files(self) -> None:
        lay = self.layout
        lay.base.mkdir(parents=True, exist_ok=True)
        write_config(lay.config, cc.config(lay, sandbox_image=self.sandbox_image))
        lay.runc_wrapper.write_text(cc.runc_wrapper())
        lay.runc_wrapper.chmod(0o755)
        hosts = lay.certs_dir / self.registry_host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(cc.hosts_toml(self.registry_host))
        network.write_conf_dir(lay.cni_conf_dir, self.net)

    def start(self) -> None:
        self.write_files()
        with self.layout.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [BINARY, "--config", str(self.layout.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            wait_ready(self.client, READY_TIMEOUT)
        except TimeoutError as exc:
            tail = self.layout.log.read_text(errors="replace")[-3000:]
            raise TimeoutError(f"{exc}\n--- containerd log ---\n{tail}") from None

    def daemon_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def helper_pids(self) -> list[int]:
        return []

    def shim_pids(self) -> list[int]:
        address = str(self.layout.socket)
        out = []
        for pid in procfs.pids():
            argv = procfs.cmdline(pid)
            if argv and argv[0].endswith(SHIM) and _flag(argv, "-address") == address:
                out.append(pid)
        return out

    def shim_socket(self, shim_id: str) -> Path:
        """Where containerd 1.6 puts a shim's socket: a hash of address, namespace and id."""
        key = f"{self.layout.socket}/{NAMESPACE}/{shim_id}".encode()
        return SHIM_SOCKET_DIRS[0] / hashlib.sha256(key).hexdigest()

    def disk_usage(self) -> int:
        return tree_bytes(self.layout.root)

    def log_path(self) -> Path | None:
        return self.layout.log

    def remove_all_pods(self) -> None:
        rt = self.client.runtime
        for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items:
            rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
            self.proc = None

    def sweep(self) -> list[str]:
        """After stop: remove what containerd left running or mounted; says what it found."""
        runc_root = self.layout.runc_root / NAMESPACE
        found = [f"runc container {c}" for c in runc_leftovers(runc_root)]
        shims = self.shim_pids()
        sockets = [self.shim_socket(_flag(procfs.cmdline(p), "-id") or "") for p in shims]
        found += [f"shim pid {p}" for p in kill_pids(shims, str(self.layout.socket))]
        for socket in sockets:
            socket.unlink(missing_ok=True)
        found += cleanup.unmount_under(self.layout.base)
        network.delete_bridge(self.net.bridge)
        for directory in SHIM_SOCKET_DIRS:
            if directory not in self._preexisting:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    found.append(f"left {directory}: {exc.strerror}")
        return found


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `-name value` or `-name=value` in a Go-style command line."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
