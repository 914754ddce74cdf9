"""A busybox rootfs and minimal OCI bundles for the shim's integration tests.

The lead's real spec generator lives in cri/; this is the smallest config
runc accepts for our tests: busybox-static applets as hardlinks, a read-only
root, the usual /proc /dev /sys mounts, and a RELATIVE cgroupsPath
(`berth-test/<id>`) so runc nests the container under our own cgroup in every
hierarchy (FLOORS §1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
CGROUP_PARENT = "berth-test"
APPLETS_EXTRA = ("sh", "echo", "sleep", "cat", "true", "false", "stty", "tail", "head", "ls")


def make_rootfs(root: Path) -> Path:
    """A rootfs at `root` with busybox and every applet it has, as hardlinks."""
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    listed = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for name in {*listed.stdout.split(), *APPLETS_EXTRA}:
        link = root / "bin" / name
        if name != "busybox" and not link.exists():
            os.link(root / "bin" / "busybox", link)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
]


def config(
    container_id: str,
    args: list[str],
    *,
    tty: bool = False,
    memory_limit: int | None = None,
    env: list[str] | None = None,
    pid_ns: bool = True,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory_limit is not None:
        resources["memory"] = {"limit": memory_limit, "swap": memory_limit}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm", "HOME=/root", *(env or [])],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "c",
        "mounts": _mounts(),
        "linux": {
            "cgroupsPath": f"{CGROUP_PARENT}/{container_id}",
            "resources": resources,
            "namespaces": [{"type": t} for t in _namespaces(pid_ns)],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _namespaces(pid_ns: bool) -> list[str]:
    return [*(["pid"] if pid_ns else []), "network", "ipc", "uts", "mount"]


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]


def write_bundle(bundle: Path, spec: dict[str, Any]) -> Path:
    (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def own_cgroup_dirs() -> list[Path]:
    """Our `berth-test` parent cgroup in every mounted hierarchy (may not exist)."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.split(",")[0].removeprefix("name=") if controllers else "unified"
        base = Path("/sys/fs/cgroup") / name
        if base.is_dir():
            found.append(base / path.lstrip("/") / CGROUP_PARENT)
    return found


def remove_test_cgroups() -> None:
    """rmdir whatever runc left under `berth-test` (empty cgroups only)."""
    for parent in own_cgroup_dirs():
        if not parent.is_dir():
            continue
        for child in sorted(parent.glob("*"), reverse=True):
            if child.is_dir():
                os.rmdir(child)
        os.rmdir(parent)


def is_mounted(path: str | Path) -> bool:
    return os.path.ismount(path)


def exists(path: str | Path) -> bool:
    return os.path.lexists(path)
