"""Files every container of a pod shares: /etc/hostname, /etc/resolv.conf, /etc/hosts, /dev/shm.

Written the way containerd writes them (internal/cri/server/podsandbox): the hostname plus a
newline; resolv.conf from the CRI DNS config, or a copy of the host's when the pod has none;
a copy of the host's /etc/hosts (the kubelet mounts its own managed hosts file over it for most
pods). The files are replaced atomically, so a container never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cri import netns

SHM_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """CRI DNSConfig: nameservers, search domains and resolver options."""

    servers: Sequence[str] = ()
    searches: Sequence[str] = ()
    options: Sequence[str] = ()

    def is_empty(self) -> bool:
        return not (self.servers or self.searches or self.options)


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFiles:
    hostname_path: Path
    resolv_path: Path
    hosts_path: Path


def render_resolv_conf(dns: DnsConfig) -> str:
    """resolv.conf text: one search line, one nameserver line each, one options line."""
    lines: list[str] = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines.extend(f"nameserver {server}" for server in dns.servers)
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(f"{line}\n" for line in lines)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary sibling, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def write_pod_files(
    directory: Path,
    *,
    hostname: str,
    dns: DnsConfig | None,
    host_resolv: Path = Path("/etc/resolv.conf"),
    host_hosts: Path = Path("/etc/hosts"),
) -> PodFiles:
    """Write ``hostname``, ``resolv.conf`` and ``hosts`` into ``directory`` (created if needed).

    Idempotent: rewriting replaces the files. A missing host file gives an empty copy.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = PodFiles(
        hostname_path=directory / "hostname",
        resolv_path=directory / "resolv.conf",
        hosts_path=directory / "hosts",
    )
    if dns is None or dns.is_empty():
        resolv = _read_or_empty(host_resolv)
    else:
        resolv = render_resolv_conf(dns).encode()
    _write_atomic(files.hostname_path, f"{hostname}\n".encode())
    _write_atomic(files.resolv_path, resolv)
    _write_atomic(files.hosts_path, _read_or_empty(host_hosts))
    _fsync_dir(directory)
    return files


def mount_shm(path: Path, size: int = SHM_SIZE) -> None:
    """Mount a private tmpfs for the pod's /dev/shm at ``path`` (created if needed).

    Idempotent: a path that is already a mount point is left as it is.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        return
    flags = netns.MS_NOSUID | netns.MS_NODEV | netns.MS_NOEXEC
    netns.mount("shm", path, "tmpfs", flags, f"mode=1777,size={size}")
    # Private, so the mount never shows up in (or is held by) another mount namespace.
    netns.mount(None, path, None, netns.MS_PRIVATE)


def unmount_shm(path: Path) -> None:
    """Unmount the pod's /dev/shm; idempotent (a missing or unmounted path is fine)."""
    netns.unmount(path)
