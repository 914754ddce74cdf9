"""berthd as the runtime under test: its own root, state, socket, CNI network and mirrors."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.critest_support.network import CniNetwork
from e2e.images.catalog import MIRRORED_HOSTS
from tests.support.berthd import Berthd


def berth_settings(net: CniNetwork, registry_host: str) -> dict[str, Any]:
    """berthd config keys beyond the private dirs Berthd sets (cgroup_root = "self" included)."""
    mirror = [f"http://{registry_host}"]
    return {
        "log_level": "debug",
        "cni": {"conf_dir": str(net.conf_dir), "plugin_dirs": ["/usr/lib/cni"]},
        "registry": {
            "config_path": "",
            "insecure": [registry_host],
            "mirrors": {host: mirror for host in MIRRORED_HOSTS},
        },
    }


@dataclass(slots=True, kw_only=True)
class BerthRuntime:
    daemon: Berthd
    name: str = "berth"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.daemon.socket}"

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None, "berthd is not running"
        return self.daemon.proc.pid

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def stop(self) -> None:
        try:
            self.daemon.stop(timeout=30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()


def start_berth(workdir: Path, net: CniNetwork, registry_host: str) -> BerthRuntime:
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = BerthRuntime(daemon=Berthd(workdir, berth_settings(net, registry_host)))
    try:
        runtime.daemon.start(timeout=60)
    except BaseException:
        runtime.stop()
        raise
    return runtime
