"""User namespaces for pods (``userns_options`` mode POD) and the idmapped mounts they need.

A pod in its own user namespace gets it pinned like its other namespaces, and its network, IPC
and UTS namespaces are created inside it, owned by it: runc joins a container's user namespace
first and the others after, as the container's root, which may only join namespaces its user
namespace owns. A thread cannot create a user namespace (the kernel refuses a multithreaded
caller), so a short-lived ``unshare --user --net ...`` process does, berthd writes its uid and
gid maps from outside and pins its namespaces; then it exits.

Files keep the ids they have on disk, so in the pod's namespace the image's files (host root's)
would be nobody's. Containers see them through idmapped mounts (mount_setattr(2),
MOUNT_ATTR_IDMAP): each image layer of the rootfs overlay and of image volumes, and each bind
mount (volumes, the pod's hosts/resolv.conf/hostname/shm) is cloned with the pod's mapping under
the bundle's ``idmap/`` directory, and the overlays and the OCI spec use those clones. Debian's
runc 1.1 cannot make idmapped mounts itself. The overlay's upper layer stays unmapped and is
owned by the pod's root (overlayfs cannot be idmapped itself, and writes to an idmapped upper
layer by host root fail): what a container writes belongs, on disk, to the host ids its root
maps to. Once the shim has mounted the rootfs and runc has made the container's mounts, the
clones are detached (overlayfs and the container's mount namespace keep what they use).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import subprocess
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri import errors, netns
from cri.api.v1 import api_pb2
from cri.oci import namespaces
from snapshotter.api import Mount

_SYS_OPEN_TREE = 428  # the same number on every architecture (added after the unification)
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOUNT_ATTR_IDMAP = 0x00100000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

UNSHARE = "unshare"  # util-linux
_UNSHARE_FLAG = {"net": "--net", "ipc": "--ipc", "uts": "--uts"}
_HELPER_TIMEOUT = 5.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


@dataclass(frozen=True, slots=True)
class IdMap:
    """A pod's one uid and one gid mapping: (container id, host id, length) each."""

    uid: tuple[int, int, int]
    gid: tuple[int, int, int]

    @property
    def root(self) -> tuple[int, int]:
        """The host uid and gid of the pod's root (both mappings start at container id 0)."""
        return self.uid[1], self.gid[1]

    def oci(self) -> dict[str, list[dict[str, int]]]:
        """linux.uidMappings and linux.gidMappings of an OCI spec."""
        return {
            f"{kind}Mappings": [{"containerID": m[0], "hostID": m[1], "size": m[2]}]
            for kind, m in (("uid", self.uid), ("gid", self.gid))
        }


def pod_idmap(config: api_pb2.PodSandboxConfig) -> IdMap | None:
    """The pod's mappings if it asks for a user namespace of its own; None for the host's.

    InvalidArgument for what berth does not do (modes CONTAINER and TARGET, other than one
    mapping from container id 0) and for host namespaces beside it.
    """
    options = config.linux.security_context.namespace_options
    maps = namespaces.userns_mappings(
        options.userns_options if options.HasField("userns_options") else None
    )
    if maps is None:
        return None
    hosts = [
        name
        for name, mode in (("network", options.network), ("pid", options.pid), ("ipc", options.ipc))
        if mode == api_pb2.NODE
    ]
    if hosts:
        raise errors.InvalidArgument(
            f"a pod in its own user namespace cannot use the host's {', '.join(hosts)} namespace"
        )
    if config.linux.security_context.privileged:
        raise errors.InvalidArgument("a pod in its own user namespace cannot be privileged")
    (uid,), (gid,) = maps

    def triple(m: dict[str, int]) -> tuple[int, int, int]:
        return m["containerID"], m["hostID"], m["size"]

    return IdMap(uid=triple(uid), gid=triple(gid))


# -- the pod's namespaces ----------------------------------------------------------------------


def create_pod_namespaces(
    pin_dir: Path,
    kinds: Collection[str],
    idmap: IdMap,
    *,
    hostname: str | None = None,
) -> dict[str, Path]:
    """A user namespace with `idmap` and, owned by it, new namespaces of `kinds` ("net",
    "ipc", "uts"), all pinned at ``pin_dir/<kind>``; `hostname` set, ``lo`` up.

    Returns kind → pin path ("user" included). On any failure nothing is left behind.
    """
    unknown = set(kinds) - set(_UNSHARE_FLAG)
    if unknown:
        raise errors.InvalidArgument(f"unknown namespace kinds {sorted(unknown)}")
    pin_dir.mkdir(parents=True, exist_ok=True)
    netns.ensure_private_mount(pin_dir.parent)
    pins = {kind: pin_dir / kind for kind in ("user", *kinds)}
    made: list[Path] = []
    with _unshared(kinds, idmap) as pid:
        try:
            for kind, path in pins.items():
                netns.prepare_pin_file(path)
                made.append(path)
                netns.mount(f"/proc/{pid}/ns/{kind}", path, None, netns.MS_BIND)
            if hostname is not None and "uts" in pins:
                netns.set_hostname(pins["uts"], hostname)
            if "net" in pins:
                netns.set_loopback_up(pins["net"])
        except BaseException:
            netns.remove_namespaces(made)
            raise
    return pins


@contextlib.contextmanager
def _unshared(kinds: Collection[str], idmap: IdMap) -> Iterator[int]:
    """The pid of a process in a new user namespace mapped by `idmap`, and in new namespaces
    of `kinds` that namespace owns; the process ends with the block."""
    argv = [UNSHARE, "--user", *(_UNSHARE_FLAG[k] for k in kinds), "--", "cat"]
    try:
        helper = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot run {UNSHARE}: {exc}") from None
    try:
        _wait_until_unshared(helper)
        for kind, mapping in (("uid", idmap.uid), ("gid", idmap.gid)):
            # /proc/PID/uid_map: container id, host id, length
            Path(f"/proc/{helper.pid}/{kind}_map").write_text("{} {} {}\n".format(*mapping))
        yield helper.pid
    finally:
        _end_helper(helper)


def _wait_until_unshared(helper: subprocess.Popen[bytes]) -> None:
    ours = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + _HELPER_TIMEOUT
    while True:
        if helper.poll() is not None:
            assert helper.stderr is not None
            message = helper.stderr.read().decode(errors="replace").strip()
            raise errors.FailedPrecondition(f"{UNSHARE} --user failed: {message}")
        try:
            if os.readlink(f"/proc/{helper.pid}/ns/user") != ours:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise errors.DeadlineExceeded(f"{UNSHARE} --user did not start in time")
        time.sleep(0.001)


def _end_helper(helper: subprocess.Popen[bytes]) -> None:
    assert helper.stdin is not None and helper.stderr is not None
    helper.stdin.close()  # cat reads EOF and exits
    try:
        helper.wait(_HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()
    helper.stderr.close()


# -- idmapped mounts ---------------------------------------------------------------------------


def _syscall_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _open_idmapped_tree(source: str, userns_fd: int, *, recursive: bool) -> int:
    """A detached clone of the mount tree at `source`, idmapped with `userns_fd`'s mapping."""
    flags = _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(source), flags)
    if fd < 0:
        raise _syscall_error(f"open_tree {source}")
    attr = _MountAttr(attr_set=_MOUNT_ATTR_IDMAP, userns_fd=userns_fd)
    at_flags = _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0)
    if _libc.syscall(
        _SYS_MOUNT_SETATTR, fd, b"", at_flags, ctypes.byref(attr), ctypes.sizeof(attr)
    ):
        error = _syscall_error(f"idmapped mount of {source}")
        os.close(fd)
        raise error
    return int(fd)


def idmapped_clone(source: str, target: Path, userns_fd: int, *, recursive: bool) -> None:
    """Mount an idmapped clone of `source` (a directory or a file) at `target` (created)."""
    fd = _open_idmapped_tree(source, userns_fd, recursive=recursive)
    try:
        if os.path.isdir(source):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        if _libc.syscall(
            _SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, os.fsencode(target), _MOVE_MOUNT_F_EMPTY_PATH
        ):
            raise _syscall_error(f"move_mount {source} to {target}")
    finally:
        os.close(fd)


def detach_all(directory: Path) -> int:
    """Detach every mount at or below `directory` (deepest first); how many. Idempotent."""
    if not directory.exists():
        return 0
    prefix = str(directory)
    points = [p for p in netns.mount_points() if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(set(points), key=len, reverse=True):
        netns.unmount(point)
    return len(points)


def idmap_rootfs(mounts: Sequence[Mount], dest: Path, userns_fd: int, idmap: IdMap) -> list[Mount]:
    """The rootfs mounts with each image layer replaced by an idmapped clone under `dest`.

    An overlay keeps its upper and work directories, handed to the pod's root; a bind
    rootfs (an image without layers) becomes an idmapped clone itself.
    """
    out = []
    for i, m in enumerate(mounts):
        options = list(m.options)
        if m.type == "overlay":
            for j, opt in enumerate(options):
                key, _, value = opt.partition("=")
                if key == "lowerdir":
                    clones = []
                    for k, layer in enumerate(value.split(":")):
                        clone = dest / f"r{i}l{k}"
                        idmapped_clone(layer, clone, userns_fd, recursive=False)
                        clones.append(str(clone))
                    options[j] = "lowerdir=" + ":".join(clones)
                elif key in ("upperdir", "workdir"):
                    os.chown(value, *idmap.root)
            out.append(Mount(type=m.type, source=m.source, options=tuple(options)))
        else:
            clone = dest / f"r{i}"
            idmapped_clone(m.source, clone, userns_fd, recursive="rbind" in options)
            out.append(Mount(type=m.type, source=str(clone), options=tuple(options)))
    return out


# Bind mounts of these are the kernel's own filesystems (sysfs cannot be idmapped): kept as
# they are, read-only for the pod's root in any case.
_KEPT_AS_IS = ("/sys",)


def idmap_spec_mounts(
    spec: dict[str, Any], dest: Path, userns_fd: int, *, mapped: Path | None = None
) -> dict[str, Any]:
    """`spec` with every bind mount's source replaced by an idmapped clone under `dest`;
    sources below `mapped` (image volumes mounted from idmapped layers) are kept."""
    mounts = []
    for i, m in enumerate(spec.get("mounts", [])):
        options = m.get("options", [])
        source = m.get("source", "")
        bind = m.get("type") == "bind" or "bind" in options or "rbind" in options
        kept = (
            m.get("destination") in _KEPT_AS_IS
            or not source.startswith("/")
            or (mapped is not None and Path(source).is_relative_to(mapped))
        )
        if bind and not kept:
            clone = dest / f"m{i}"
            idmapped_clone(m["source"], clone, userns_fd, recursive="rbind" in options)
            m = {**m, "source": str(clone)}
        mounts.append(m)
    return {**spec, "mounts": mounts}


def check_reachable(path: Path, idmap: IdMap) -> None:
    """FailedPrecondition unless the pod's root can search every directory above `path`:
    runc makes the container's mounts as that user."""
    uid, gid = idmap.root
    for directory in path.parents:
        st = directory.stat()
        if st.st_mode & stat.S_IXOTH:
            continue
        if (st.st_uid == uid and st.st_mode & stat.S_IXUSR) or (
            st.st_gid == gid and st.st_mode & stat.S_IXGRP
        ):
            continue
        raise errors.FailedPrecondition(
            f"the pod's root (host uid {uid}) cannot reach {path}: {directory} is mode "
            f"{stat.S_IMODE(st.st_mode):04o} (berth's state directory and those above it "
            "must be searchable by others)"
        )


@dataclass(frozen=True, slots=True)
class ContainerMounts:
    """The idmapped clones one container of a user-namespaced pod needs, made under `dest`
    (they can be detached once its mounts are made: see the module doc)."""

    userns_pin: str
    idmap: IdMap
    dest: Path

    def layers(self, mounts: Sequence[Mount], name: str) -> list[Mount]:
        """`mounts` (a snapshot's) with idmapped image layers: for an image volume."""
        with self._userns() as fd:
            return idmap_rootfs(mounts, self.dest / name, fd, self.idmap)

    def container(
        self, spec: dict[str, Any], rootfs: Sequence[Mount], volumes: Path
    ) -> tuple[dict[str, Any], list[Mount]]:
        """The spec and rootfs mounts seen through idmapped clones; image volumes (mounted
        under `volumes` by `layers`) are left as they are."""
        with self._userns() as fd:
            spec = idmap_spec_mounts(spec, self.dest, fd, mapped=volumes)
            return spec, idmap_rootfs(rootfs, self.dest, fd, self.idmap)

    @contextlib.contextmanager
    def _userns(self) -> Iterator[int]:
        self.dest.mkdir(parents=True, exist_ok=True)
        check_reachable(self.dest, self.idmap)
        fd = os.open(self.userns_pin, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield fd
        except OSError as exc:
            raise errors.FailedPrecondition(
                f"cannot give the pod's user namespace its mounts: {exc}"
            ) from None
        finally:
            os.close(fd)


# -- does this node support it ------------------------------------------------------------------


def probe(paths: Sequence[Path]) -> str | None:
    """Why pods cannot have user namespaces here (None: they can): a user namespace must be
    creatable and mounts of each of `paths`' filesystems idmappable."""
    idmap = IdMap(uid=(0, 1 << 30, 65536), gid=(0, 1 << 30, 65536))
    try:
        with _unshared((), idmap) as pid:
            userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            try:
                for path in paths:
                    os.close(_open_idmapped_tree(str(path), userns_fd, recursive=False))
            finally:
                os.close(userns_fd)
    except (OSError, errors.Error) as exc:
        return str(exc)
    return None
