"""Apply one OCI layer (a possibly compressed tar) onto an empty directory.

The directory becomes one overlayfs layer: OCI whiteouts are converted on the
way (`.wh.<name>` → a 0/0 character device, `.wh..wh..opq` → the
`trusted.overlay.opaque` xattr on the directory). Ownership, modes (setuid,
setgid, sticky included), mtimes, `SCHILY.xattr.*` attributes, hardlinks,
symlinks, device nodes and fifos are kept.

The tar is hostile. Nothing is ever created outside `dest`: names with ".."
or a leading "/" are refused, every parent directory is opened component by
component with O_NOFOLLOW (a symlink on the way is refused, never followed),
hardlinks may only point at entries this layer already extracted, and the
uncompressed size and entry count are bounded. Any failure raises
`errors.InvalidArgument` (or `Unavailable` when the host ran out of space)
naming the entry and the layer; the caller removes the partial directory.

Blocking: run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import structlog

from snapshotter import errors
from snapshotter.fsutil import DIR_FLAGS, DirFds, UnsafePath, proc_path, split
from snapshotter.layerstream import LayerStream, tar_reader
from snapshotter.streams import CHUNK, CODEC_ERRORS, Readable

log = structlog.get_logger(__name__)

WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
OPAQUE_XATTR: Final = "trusted.overlay.opaque"
# Namespaces a layer may set. trusted.* would let a layer forge overlayfs
# metadata (opaque, redirect, origin), so it is dropped.
_XATTR_PREFIXES: Final = ("user.", "security.", "system.posix_acl_")
_PAX_XATTR: Final = "SCHILY.xattr."
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The host, not the layer, is at fault for these.
_HOST_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE})


# PAX and GNU long-name headers are read into memory whole; real ones are a few KiB.
MAX_METADATA_HEADER: Final = 1 << 20
_METADATA_TYPES: Final = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class BoundedTarInfo(tarfile.TarInfo):
    """Refuses an oversized metadata header before tarfile loads it into memory."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _METADATA_TYPES and self.size > MAX_METADATA_HEADER:
            raise tarfile.HeaderError(f"{self.size}-byte metadata header (PAX or GNU long name)")
        # tarfile's (private, long-stable) per-member hook; typeshed does not declare it
        return super()._proc_member(tf)  # type: ignore[misc, no-any-return]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackLimits:
    """Bounds against decompression bombs: uncompressed bytes and tar entries per layer."""

    max_bytes: int = 64 << 30
    max_entries: int = 4_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerStats:
    """What applying a layer found: its diff_id (sha256 of the uncompressed tar)."""

    diff_id: str
    size: int
    entries: int


DEFAULT_LIMITS: Final = UnpackLimits()


def apply_layer(
    stream: Readable,
    media_type: str,
    dest: Path,
    *,
    layer: str = "",
    expected_diff_id: str | None = None,
    limits: UnpackLimits = DEFAULT_LIMITS,
) -> LayerStats:
    """Extract the layer read from `stream` into the existing directory `dest`.

    `media_type` selects gzip, zstd or plain tar (an unknown one is sniffed);
    `layer` (its digest) names the layer in errors. With `expected_diff_id`
    a different diff_id raises InvalidArgument after extraction.
    """
    what = f"layer {layer or '(unnamed)'}"
    root_fd = os.open(dest, DIR_FLAGS)
    try:
        stats = _extract_all(stream, media_type, root_fd, what, limits)
    finally:
        os.close(root_fd)
    if expected_diff_id is not None and stats.diff_id != expected_diff_id:
        raise errors.InvalidArgument(
            f"{what}: diff_id is {stats.diff_id}, image config says {expected_diff_id}"
        )
    return stats


def _extract_all(
    stream: Readable, media_type: str, root_fd: int, what: str, limits: UnpackLimits
) -> LayerStats:
    extractor = _Extractor(root_fd, what, limits)
    tar = LayerStream(tar_reader(stream, media_type), limit=limits.max_bytes, what=what)
    try:
        extractor.run(tar)
        tar.drain()  # the digest covers the end-of-archive blocks and padding too
    except (tarfile.TarError, *CODEC_ERRORS) as exc:
        raise _classify(exc, f"{what}: corrupt or truncated tar stream") from None
    finally:
        tar.close()
        extractor.close()
    return LayerStats(diff_id=tar.digest, size=tar.count, entries=extractor.entries)


def _classify(exc: BaseException, context: str) -> errors.Error:
    if isinstance(exc, OSError) and exc.errno in _HOST_ERRNOS:
        return errors.Unavailable(f"{context}: {exc}")
    return errors.InvalidArgument(f"{context}: {exc}")


class _Extractor:
    """Applies tar members one by one through fds confined to the layer root."""

    def __init__(self, root_fd: int, what: str, limits: UnpackLimits) -> None:
        self._dirs = DirFds(root_fd)
        self._what = what
        self._limits = limits
        self._same_owner = os.geteuid() == 0
        self._linkable: set[tuple[str, ...]] = set()
        self._dir_meta: dict[tuple[str, ...], tarfile.TarInfo] = {}
        self._written = 0
        self.entries = 0

    def close(self) -> None:
        self._dirs.close()

    def run(self, tar: LayerStream) -> None:
        """tarfile parses the headers (its seekable mode, over a stream that only skips
        forward); regular files' data is copied from the stream here."""
        self._tar = tar
        with tarfile.TarFile(fileobj=tar, mode="r", tarinfo=BoundedTarInfo) as tf:  # type: ignore[arg-type]
            for member in tf:
                self._count(member)
                self._dirs.trim()
                with self._about(member.name):
                    self._entry(tf, member)
        with self._about("(directory attributes)"):
            self._finish_dirs()

    @contextlib.contextmanager
    def _about(self, entry: str) -> Iterator[None]:
        """Turn what goes wrong with one entry into an error naming it and the layer."""
        try:
            yield
        except (UnsafePath, ValueError) as exc:
            raise errors.InvalidArgument(f"{self._what}: entry {entry!r}: {exc}") from None
        except OSError as exc:
            raise _classify(exc, f"{self._what}: entry {entry!r}") from None

    def _count(self, member: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise errors.InvalidArgument(
                f"{self._what}: more than {self._limits.max_entries} entries"
            )
        if member.isreg():
            self._written += member.size
            if self._written > self._limits.max_bytes:
                raise errors.InvalidArgument(
                    f"{self._what}: files larger than {self._limits.max_bytes} bytes in total"
                )

    def _entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = split(m.name)
        if parts and parts[0].startswith(WHITEOUT_PREFIX * 2):
            return  # AUFS metadata (.wh..wh.plnk/ and the like) at the root: nothing to apply
        if parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        if m.isdir():
            self._mkdir(parts, m)
            return
        if not parts:
            raise ValueError("only a directory may stand for the layer root")
        pfd = self._dirs.get(parts[:-1], create=True)
        self._clear(pfd, parts)
        if m.islnk():
            self._hardlink(pfd, parts, m)
        else:
            self._create(tf, pfd, parts[-1], m)
        self._linkable.add(parts)

    # --- entry kinds -------------------------------------------------------

    def _mkdir(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        if parts:
            pfd = self._dirs.get(parts[:-1], create=True)
            self._ensure_dir(pfd, parts)
        fd = self._dirs.get(parts, create=False)
        if self._same_owner:
            os.chown(fd, m.uid, m.gid)
        self._set_xattrs(m, fd=fd)
        self._dir_meta[parts] = m  # mode and mtime once all children exist

    def _ensure_dir(self, pfd: int, parts: tuple[str, ...]) -> None:
        try:
            st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            os.mkdir(parts[-1], 0o700, dir_fd=pfd)
            return
        if not stat.S_ISDIR(st.st_mode):
            self._clear(pfd, parts)
            os.mkdir(parts[-1], 0o700, dir_fd=pfd)

    def _create(self, tf: tarfile.TarFile, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        if m.isreg():
            self._regular(tf, pfd, name, m)
            return
        if m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
        else:
            raise ValueError(f"unsupported tar entry type {m.type!r}")
        self._attributes(pfd, name, m)
        os.utime(name, ns=_ns(m), dir_fd=pfd, follow_symlinks=False)

    def _regular(self, tf: tarfile.TarFile, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if m.issparse():  # tarfile maps the sparse data onto the file's offsets
                src = tf.extractfile(m)
                assert src is not None  # a regular member always has data
                _copy(src, fd)
            else:
                self._tar.seek(m.offset_data)
                self._tar.copy_to(fd, m.size)
            if self._same_owner:
                os.chown(fd, m.uid, m.gid)
            os.chmod(fd, m.mode)  # after chown, which clears setuid/setgid
            self._set_xattrs(m, fd=fd)  # after chown, which drops file capabilities
            os.utime(fd, ns=_ns(m))  # last: nothing writes to it any more
        finally:
            os.close(fd)

    def _attributes(self, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        if self._same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not m.issym():  # Linux has no symlink modes; the entry was just made, not a link
            os.chmod(name, m.mode, dir_fd=pfd)
        self._set_xattrs(m, path=proc_path(pfd, name))

    def _hardlink(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        try:
            target = split(m.linkname)
        except ValueError as exc:
            raise ValueError(f"hardlink target {m.linkname!r}: {exc}") from None
        if target not in self._linkable or target == parts:
            raise ValueError(f"hardlink to {m.linkname!r}, which this layer has not extracted")
        tfd = self._dirs.get(target[:-1], create=False)
        os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, parts: tuple[str, ...]) -> None:
        pfd = self._dirs.get(parts[:-1], create=True)
        base = parts[-1]
        if base == OPAQUE_MARKER:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # AUFS bookkeeping (.wh..wh.plnk and the like): nothing to apply
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise ValueError("whiteout of an invalid name")
        hidden = (*parts[:-1], name)
        self._clear(pfd, hidden)
        os.mknod(hidden[-1], stat.S_IFCHR, 0, dir_fd=pfd)

    # --- helpers -----------------------------------------------------------

    def _clear(self, pfd: int, parts: tuple[str, ...]) -> None:
        """Remove what an earlier entry of this layer put at `parts` (tar: last one wins)."""
        try:
            st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        self._dirs.forget(parts)
        self._linkable.discard(parts)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(parts[-1], dir_fd=pfd)
        else:
            os.unlink(parts[-1], dir_fd=pfd)

    def _set_xattrs(self, m: tarfile.TarInfo, *, fd: int = -1, path: str = "") -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            name = key[len(_PAX_XATTR) :]
            if not name.startswith(_XATTR_PREFIXES):
                log.debug("layer xattr dropped", layer=self._what, entry=m.name, xattr=name)
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                if fd >= 0:
                    os.setxattr(fd, name, data)
                else:
                    os.setxattr(path, name, data, follow_symlinks=False)
            except OSError as exc:
                # e.g. user.* on a symlink, or security.capability without CAP_SETFCAP
                if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                    raise
                log.debug("layer xattr not settable", entry=m.name, xattr=name, error=str(exc))

    def _finish_dirs(self) -> None:
        for parts, m in self._dir_meta.items():
            try:
                fd = self._dirs.get(parts, create=False)
            except (FileNotFoundError, UnsafePath):
                continue  # replaced by a later entry
            os.chmod(fd, m.mode)
            os.utime(fd, ns=_ns(m))


def _copy(src: IO[bytes], fd: int) -> None:
    while chunk := src.read(CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _ns(m: tarfile.TarInfo) -> tuple[int, int]:
    t = int(m.mtime * 1_000_000_000)  # PAX mtimes may be fractional
    return (t, t)
