"""Debian's containerd 1.6 as the runtime under test, configured like berth (see
containerd_config for why each setting is there)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from e2e.critest_support import containerd_config as cfg
from e2e.critest_support.network import CniNetwork
from e2e.critest_support.runtimes import wait_cri_ready

CONTAINERD: Final = Path("/usr/bin/containerd")
# containerd 1.6 puts shim sockets here whatever its state dir is; removed if we made it.
SHIM_SOCKET_DIR: Final = Path("/run/containerd/s")


@dataclass(slots=True, kw_only=True)
class ContainerdRuntime:
    proc: subprocess.Popen[bytes]
    socket: Path
    log_path: Path
    made_shim_socket_dir: bool = False
    name: str = "containerd"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.made_shim_socket_dir:
            with contextlib.suppress(OSError):  # not empty: shims still run; teardown ends them
                os.removedirs(SHIM_SOCKET_DIR)


def write_files(workdir: Path, net: CniNetwork, registry_host: str) -> Path:
    """Everything containerd reads; returns the config file."""
    workdir.mkdir(parents=True, exist_ok=True)
    wrapper = cfg.write_runc_wrapper(workdir / "runc-wrapper")
    certs_d = cfg.write_certs_d(workdir / "certs.d", registry_host)
    config = workdir / "config.toml"
    config.write_text(
        cfg.config_toml(
            workdir=workdir,
            socket=workdir / "containerd.sock",
            wrapper=wrapper,
            conf_dir=net.conf_dir,
            certs_d=certs_d,
        )
    )
    return config


def start_containerd(workdir: Path, net: CniNetwork, registry_host: str) -> ContainerdRuntime:
    if not CONTAINERD.exists():
        raise FileNotFoundError(f"{CONTAINERD} is missing: apt-get install containerd")
    config = write_files(workdir, net, registry_host)
    log_path = workdir / "containerd.log"
    made_dir = not SHIM_SOCKET_DIR.parent.exists()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(CONTAINERD), "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    runtime = ContainerdRuntime(
        proc=proc,
        socket=workdir / "containerd.sock",
        log_path=log_path,
        made_shim_socket_dir=made_dir,
    )
    try:
        wait_cri_ready(runtime.endpoint, lambda: proc.poll() is None)
    except BaseException:
        runtime.stop()
        raise
    return runtime
