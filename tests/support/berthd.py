"""Run a real berthd as a subprocess on a private root, state dir and socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cri.ctl.client import CriClient

BERTHD = [sys.executable, "-m", "cri.daemon"]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write a config.toml: top-level scalars first, then one table per mapping."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    while tables:
        name, table = tables.pop(0)
        lines.append(f"\n[{name}]")
        for key, value in table.items():
            if isinstance(value, Mapping):
                tables.append((f"{name}.{json.dumps(key)}", value))
            else:
                lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


class Berthd:
    """One berthd process; ``client`` speaks CRI to it."""

    def __init__(self, workdir: Path, settings: Mapping[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.socket = self.state / "berth.sock"
        self.log_path = workdir / "berthd.log"
        self.settings: dict[str, Any] = {
            "root": str(self.root),
            "state": str(self.state),
            "socket": str(self.socket),
            "log_level": "debug",
            "metrics_address": "127.0.0.1:0",
            "cgroup_root": "self",
            # e2e/vm runs the suite once per driver on a cgroup v2 node.
            "cgroup_driver": os.environ.get("BERTH_TEST_CGROUP_DRIVER", "cgroupfs"),
            **(settings or {}),
        }
        self.config_path = workdir / "config.toml"
        self.command = list(BERTHD)  # what runs berthd (e2e.soak may wrap it)
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: CriClient | None = None

    @property
    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(str(self.socket), timeout=30)
        return self._client

    def start(self, timeout: float = 20.0) -> None:
        write_config(self.config_path, self.settings)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"berthd did not create {self.socket}:\n{self.logs()}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """The socket accepts connections (a stale file left by a crash does not)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 20.0) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self._client is not None:
            self._client.close()
            self._client = None
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def running_berthd(workdir: Path, settings: Mapping[str, Any] | None = None) -> Iterator[Berthd]:
    daemon = Berthd(workdir, settings)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
