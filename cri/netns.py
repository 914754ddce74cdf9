"""Pod namespaces (net, ipc, uts) created by raw syscalls and pinned by bind mounts.

No process holds a pod's namespaces: a short-lived thread unshares them, bind-mounts
``/proc/thread-self/ns/<kind>`` onto an empty file ``<pin_dir>/<kind>`` and exits. The pin keeps
the namespace alive until :func:`remove_namespaces` unmounts it. Nothing is exec'd (``ip netns
add`` costs 1.7 ms, this 0.6 ms; shared/FLOORS.md §2).

Why a fresh thread each time: unshare(2) and setns(2) change only the calling thread, and a
thread whose namespaces were changed must never run anything else. A thread that exits after its
one job needs no "setns back", so a failure half-way can never leave a worker in a pod's
namespace.

The directory above the pin dirs is made a private mount once, so a pin never propagates into
another mount namespace (a copy there would keep the namespace alive after we unmount ours).
Choose ``pin_dir`` as ``<common dir>/<sandbox id>`` so that one private mount serves every pod.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from cri import errors

log = structlog.get_logger(__name__)

T = TypeVar("T")

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS: Mapping[str, int] = {
    "net": CLONE_NEWNET,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
}
# Every kind a pod may have pinned (a user namespace: cri.userns), as an OCI spec names it.
PIN_KINDS: Mapping[str, str] = {"user": "user", "net": "network", "ipc": "ipc", "uts": "uts"}

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

HOST_NAME_MAX = 64
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, then ifr_flags in the union

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | Path | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | Path | None,
    target: str | Path,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    """mount(2); raises OSError naming the target."""
    result = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(result, f"mount {source} on {target}")


def unmount(target: str | Path) -> bool:
    """Detach every mount stacked on ``target``; False if nothing was mounted there.

    Idempotent: a missing path or a path that is not a mount point is not an error.
    """
    unmounted = False
    for _ in range(16):  # a path is never stacked this deep; the bound stops a runaway loop
        if _libc.umount2(_b(target), MNT_DETACH) == 0:
            unmounted = True
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return unmounted
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    return unmounted


def run_in_fresh_thread(fn: Callable[[], T], *, name: str = "berth-ns") -> T:
    """Run ``fn`` in a new thread that exits afterwards; return its result or raise its error."""
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]  # fn's T, boxed through the list


def _setns(path: Path, kind: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, NAMESPACE_FLAGS[kind]), f"setns {kind} {path}")
    finally:
        os.close(fd)


def run_in_namespaces(ns_paths: Mapping[str, Path], fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread joined to the given namespaces (kind → pin path).

    A socket created by ``fn`` stays in the pod's netns after ``fn`` returns, so this is how
    berthd dials a pod port or reads per-namespace /proc files.
    """
    _check_kinds(ns_paths)

    def inside() -> T:
        for kind, path in ns_paths.items():
            _setns(path, kind)
        return fn()

    return run_in_fresh_thread(inside, name="berth-setns")


def run_in_netns(path: Path, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside the network namespace pinned at ``path``."""
    return run_in_namespaces({"net": path}, fn)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    unknown = sorted(set(kinds) - NAMESPACE_FLAGS.keys())
    if unknown:
        raise errors.InvalidArgument(f"unsupported namespace kinds {unknown}")
    return tuple(kind for kind in NAMESPACE_FLAGS if kind in kinds)


def _check_hostname(hostname: str) -> bytes:
    raw = hostname.encode()
    if not raw or len(raw) > HOST_NAME_MAX:
        raise errors.InvalidArgument(f"hostname {hostname!r} must be 1 to 64 bytes")
    return raw


def _sethostname(raw: bytes) -> None:
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def _loopback_up() -> None:
    """Set IFF_UP on ``lo`` of the calling thread's netns (one ioctl; no netlink, no exec)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        if not flags & _IFF_UP:
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def set_loopback_up(net_path: Path) -> None:
    """Bring ``lo`` up in the pinned netns (done by :func:`create_namespaces` already)."""
    run_in_netns(net_path, _loopback_up)


def set_hostname(uts_path: Path, hostname: str) -> None:
    """Set the hostname of the pinned UTS namespace."""
    raw = _check_hostname(hostname)
    run_in_namespaces({"uts": uts_path}, lambda: _sethostname(raw))


@dataclass(frozen=True, slots=True, kw_only=True)
class _MountEntry:
    mount_point: str
    propagation: frozenset[str]  # "shared", "master", … from mountinfo's optional fields


_MOUNTINFO_ESCAPES = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return _MOUNTINFO_ESCAPES.sub(lambda m: chr(int(m[1], 8)), field)


def mount_points() -> list[str]:
    """Every mount point in our mount namespace, in mountinfo's order."""
    with open("/proc/self/mountinfo") as mountinfo:
        return [_unescape(line.split()[4]) for line in mountinfo]


def _mount_entry(path: Path) -> _MountEntry | None:
    """The topmost mount at ``path`` in our mount namespace, or None."""
    found: _MountEntry | None = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if _unescape(fields[4]) != str(path):
                continue
            optional = fields[6 : fields.index("-")]
            found = _MountEntry(
                mount_point=str(path),
                propagation=frozenset(tag.split(":")[0] for tag in optional),
            )
    return found


_private_dirs: set[Path] = set()
_private_lock = threading.Lock()


def ensure_private_mount(directory: Path) -> None:
    """Make ``directory`` a mount point with private propagation (once per process).

    Bind-mounts the directory onto itself (recursively, so pins already below it stay visible)
    unless it is a private mount point already.
    """
    directory = directory.resolve()
    with _private_lock:
        if directory in _private_dirs:
            return
        entry = _mount_entry(directory)
        if entry is None or entry.propagation & {"shared", "master"}:
            mount(directory, directory, None, MS_BIND | MS_REC)
            mount(None, directory, None, MS_PRIVATE)
            log.info("pin directory made private", path=str(directory))
        _private_dirs.add(directory)


def release_private_mount(directory: Path) -> bool:
    """Undo :func:`ensure_private_mount` when no pin is left below ``directory``.

    Returns whether it unmounted. Called at shutdown so a stopped berthd leaves no mount.
    """
    directory = directory.resolve()
    with _private_lock:
        # Also when an earlier, killed berthd made it: the mount outlives the process.
        if not directory.is_dir() or _mount_entry(directory) is None:
            return False
        if any(
            is_pinned(p) for pins in directory.iterdir() if pins.is_dir() for p in pins.iterdir()
        ):
            return False
        _private_dirs.discard(directory)
        return unmount(directory)


def is_pinned(path: Path) -> bool:
    """True if ``path`` is a mounted namespace file (nsfs), i.e. a live pin."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def prepare_pin_file(path: Path) -> None:
    if is_pinned(path):
        raise errors.AlreadyExists(f"namespace pin {path} exists already")
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    os.close(fd)


def _unshare_and_pin(pins: Mapping[str, Path], hostname: bytes | None, loopback: bool) -> None:
    """Runs in a fresh thread: new namespaces for this thread, then a pin for each."""
    flags = 0
    for kind in pins:
        flags |= NAMESPACE_FLAGS[kind]
    _check(_libc.unshare(flags), f"unshare {sorted(pins)}")
    if hostname is not None:
        _sethostname(hostname)
    if loopback:
        _loopback_up()
    for kind, path in pins.items():
        mount(f"/proc/thread-self/ns/{kind}", path, None, MS_BIND)


def create_namespaces(
    pin_dir: Path,
    kinds: Collection[str],
    *,
    hostname: str | None = None,
    loopback_up: bool = True,
) -> dict[str, Path]:
    """Create new namespaces of ``kinds`` ("net", "ipc", "uts") pinned at ``pin_dir/<kind>``.

    ``hostname`` (needs "uts") is set in the new UTS namespace; ``lo`` is brought up in a new
    netns unless ``loopback_up`` is False. Returns kind → pin path. Raises AlreadyExists if a
    pin is mounted there already, InvalidArgument for an unknown kind or a bad hostname, OSError
    for a syscall failure; on any failure nothing it created is left behind.
    """
    ordered = _check_kinds(kinds)
    raw_hostname = None if hostname is None else _check_hostname(hostname)
    if raw_hostname is not None and "uts" not in ordered:
        raise errors.InvalidArgument(f"hostname {hostname!r} needs a new uts namespace")
    pin_dir.mkdir(parents=True, exist_ok=True)
    ensure_private_mount(pin_dir.parent)
    pins = {kind: pin_dir / kind for kind in ordered}
    created: list[Path] = []
    try:
        for path in pins.values():
            prepare_pin_file(path)
            created.append(path)
        loopback = loopback_up and "net" in pins
        run_in_fresh_thread(lambda: _unshare_and_pin(pins, raw_hostname, loopback))
    except BaseException:
        remove_namespaces(created)
        raise
    return pins


def remove_namespaces(paths: Iterable[Path]) -> None:
    """Unmount and delete pins. Idempotent: missing or unmounted pins are fine.

    The kernel frees a namespace once no pin and no process holds it; a netns is torn down
    asynchronously after that.
    """
    for path in paths:
        unmount(path)
        path.unlink(missing_ok=True)
