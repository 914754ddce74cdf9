"""Test doubles shipped with the package: an in-memory snapshotter, a fake puller, a tar builder.

`MemorySnapshotter` keeps the snapshot contract's bookkeeping in dicts and
describes mounts of made-up paths with the same shapes as the overlay
snapshotter; the conformance suite runs against both. `FakePuller` serves
images built in memory into a real ContentStore, so the image store can be
exercised without a registry. `LayerBuilder` writes layer tars, hostile ones
included.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import zstandard

from snapshotter import errors
from snapshotter.api import Kind, Mount, SnapshotInfo, Usage
from snapshotter.content import ContentStore
from snapshotter.descriptors import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
)
from snapshotter.puller import Progress, PullResult
from snapshotter.reference import Reference
from snapshotter.registry.auth import Credentials

# --- snapshotter fake ---------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Snap:
    id: int
    key: str
    kind: Kind
    parent: str | None
    labels: dict[str, str]
    created: int
    updated: int
    usage: Usage = field(default_factory=lambda: Usage(size=0, inodes=1))


class MemorySnapshotter:
    """The Snapshotter contract in memory; `root` only prefixes the paths mounts name."""

    def __init__(self, root: str = "/memory") -> None:
        self.root = root
        self._snaps: dict[str, _Snap] = {}
        self._ids = itertools.count(1)

    def prepare(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, Kind.ACTIVE, labels)

    def view(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, Kind.VIEW, labels)

    def mounts(self, key: str) -> list[Mount]:
        snap = self._get(key)
        if snap.kind is Kind.COMMITTED:
            raise errors.FailedPrecondition(f"snapshot {key} is committed: it has no mounts")
        return self._mounts(snap)

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        _check_key(name)
        snap = self._get(key)
        if snap.kind is not Kind.ACTIVE:
            raise errors.FailedPrecondition(f"snapshot {key} is {snap.kind.value}, not active")
        if name in self._snaps:
            raise errors.AlreadyExists(f"snapshot {name} already exists")
        del self._snaps[key]
        snap.key, snap.kind, snap.updated = name, Kind.COMMITTED, time.time_ns()
        snap.labels |= dict(labels or {})
        self._snaps[name] = snap

    def remove(self, key: str) -> None:
        self._get(key)
        child = next((s.key for s in self._snaps.values() if s.parent == key), None)
        if child is not None:
            raise errors.FailedPrecondition(f"snapshot {key} has children (e.g. {child})")
        del self._snaps[key]

    def stat(self, key: str) -> SnapshotInfo:
        s = self._get(key)
        return SnapshotInfo(
            key=s.key,
            kind=s.kind,
            parent=s.parent,
            labels=dict(s.labels),
            created_at_ns=s.created,
            updated_at_ns=s.updated,
        )

    def usage(self, key: str) -> Usage:
        return self._get(key).usage

    def walk(self) -> list[SnapshotInfo]:
        return [self.stat(s.key) for s in sorted(self._snaps.values(), key=lambda s: s.id)]

    def _create(
        self, key: str, parent: str | None, kind: Kind, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        _check_key(key)
        if key in self._snaps:
            raise errors.AlreadyExists(f"snapshot {key} already exists")
        if parent:
            p = self._snaps.get(parent)
            if p is None:
                raise errors.NotFound(f"parent snapshot {parent} not found")
            if p.kind is not Kind.COMMITTED:
                raise errors.FailedPrecondition(f"parent snapshot {parent} is not committed")
        now = time.time_ns()
        snap = _Snap(
            id=next(self._ids),
            key=key,
            kind=kind,
            parent=parent or None,
            labels=dict(labels or {}),
            created=now,
            updated=now,
        )
        self._snaps[key] = snap
        return self._mounts(snap)

    def _mounts(self, snap: _Snap) -> list[Mount]:
        lowers = self._lowers(snap.parent)
        if not lowers:
            mode = "ro" if snap.kind is Kind.VIEW else "rw"
            return [Mount(type="bind", source=self._fs(snap.id), options=(mode, "rbind"))]
        lowerdir = "lowerdir=" + ":".join(lowers)
        if snap.kind is Kind.VIEW:
            if len(lowers) == 1:
                return [Mount(type="bind", source=lowers[0], options=("ro", "rbind"))]
            return [Mount(type="overlay", source="overlay", options=(lowerdir,))]
        options = (
            "index=off",
            f"workdir={self.root}/{snap.id}/work",
            f"upperdir={self._fs(snap.id)}",
            lowerdir,
        )
        return [Mount(type="overlay", source="overlay", options=options)]

    def _lowers(self, parent: str | None) -> list[str]:
        out = []
        while parent:
            snap = self._snaps[parent]
            out.append(self._fs(snap.id))
            parent = snap.parent
        return out

    def _fs(self, sid: int) -> str:
        return f"{self.root}/{sid}/fs"

    def _get(self, key: str) -> _Snap:
        snap = self._snaps.get(key)
        if snap is None:
            raise errors.NotFound(f"snapshot {key} not found")
        return snap


def _check_key(key: str) -> None:
    if not key or "\0" in key:
        raise errors.InvalidArgument(f"invalid snapshot key {key!r}")


# --- layer tars ------------------------------------------------------------------


class LayerBuilder:
    """Builds a layer tar entry by entry (PAX format, so xattrs survive).

    Names are written exactly as given: hostile names ("../x", "/abs") too.
    """

    def __init__(self, *, mtime: int = 1_600_000_000) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(  # noqa: SIM115 - closed by build()
            fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT
        )
        self._mtime = mtime

    def _info(self, name: str, kind: bytes, **attrs: Any) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mtime = attrs.pop("mtime", self._mtime)
        xattrs: Mapping[str, bytes] = attrs.pop("xattrs", {})
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
        for key, value in attrs.items():
            setattr(info, key, value)
        return info

    def dir(self, name: str, mode: int = 0o755, **attrs: Any) -> Self:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode=mode, **attrs))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **attrs: Any) -> Self:
        info = self._info(name, tarfile.REGTYPE, mode=mode, size=len(data), **attrs)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str, **attrs: Any) -> Self:
        self._tar.addfile(self._info(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **attrs))
        return self

    def hardlink(self, name: str, target: str, **attrs: Any) -> Self:
        self._tar.addfile(self._info(name, tarfile.LNKTYPE, linkname=target, **attrs))
        return self

    def device(
        self, name: str, major: int, minor: int, *, block: bool = False, **attrs: Any
    ) -> Self:
        kind = tarfile.BLKTYPE if block else tarfile.CHRTYPE
        info = self._info(name, kind, devmajor=major, devminor=minor, mode=0o666, **attrs)
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, mode: int = 0o644, **attrs: Any) -> Self:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode=mode, **attrs))
        return self

    def whiteout(self, name: str) -> Self:
        """OCI whiteout hiding `name` of the lower layers."""
        head, _, base = name.rpartition("/")
        return self.file(f"{head}/.wh.{base}" if head else f".wh.{base}")

    def opaque(self, directory: str) -> Self:
        """OCI opaque marker: `directory` hides all lower content."""
        return self.file(f"{directory.rstrip('/')}/.wh..wh..opq")

    def build(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    """`data` gzip- or zstd-compressed, or unchanged for ""."""
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(data))
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_MEDIA = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "": OCI_LAYER}


# --- puller fake ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeImage:
    """An image as FakePuller serves it: its blobs and what a pull returns."""

    blobs: Mapping[str, bytes] = field(hash=False)
    manifest_digest: str
    index_digest: str | None
    config_digest: str
    config: Mapping[str, Any] = field(hash=False)
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


def build_image(
    layers: Sequence[bytes],
    *,
    compression: str = "gzip",
    config: Mapping[str, Any] | None = None,
    index: bool = False,
) -> FakeImage:
    """An image of uncompressed layer tars `layers` (base first), as a registry would hold it."""
    blobs: dict[str, bytes] = {}
    descs = []
    for tar in layers:
        data = compress(tar, compression)
        blobs[sha256(data)] = data
        descs.append(
            Descriptor(media_type=_MEDIA[compression], digest=sha256(data), size=len(data))
        )
    diff_ids = tuple(sha256(t) for t in layers)
    cfg = {"architecture": "amd64", "os": "linux", "config": {}} | dict(config or {})
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    cfg_bytes = json.dumps(cfg).encode()
    blobs[sha256(cfg_bytes)] = cfg_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg_bytes), "size": len(cfg_bytes)},
        "layers": [d.to_json() for d in descs],
    }
    man_bytes = json.dumps(manifest).encode()
    blobs[sha256(man_bytes)] = man_bytes
    index_digest = None
    if index:
        entry = {"mediaType": OCI_MANIFEST, "digest": sha256(man_bytes), "size": len(man_bytes)}
        entry["platform"] = {"os": "linux", "architecture": "amd64"}
        idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
        index_digest = sha256(idx.encode())
        blobs[index_digest] = idx.encode()
    return FakeImage(
        blobs=blobs,
        manifest_digest=sha256(man_bytes),
        index_digest=index_digest,
        config_digest=sha256(cfg_bytes),
        config=cfg,
        layers=tuple(descs),
        diff_ids=diff_ids,
    )


class FakePuller:
    """Serves images registered with `add` into a real ContentStore, like a Puller would.

    `pulls` counts pulls per reference; `fail` maps a reference to the error its
    next pull raises; `gate`, when set, is awaited inside every pull (to hold
    pulls in flight).
    """

    def __init__(self, content: ContentStore) -> None:
        self._content = content
        self._images: dict[str, FakeImage] = {}
        self.pulls: dict[str, int] = {}
        self.fail: dict[str, errors.Error] = {}
        self.gate: Callable[[], Any] | None = None

    def add(self, ref: str, image: FakeImage) -> None:
        self._images[ref] = image

    async def pull(
        self,
        ref: Reference,
        *,
        auth: Credentials | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> PullResult:
        key = str(ref)
        self.pulls[key] = self.pulls.get(key, 0) + 1
        if self.gate is not None:
            await self.gate()
        if key in self.fail:
            raise self.fail.pop(key)
        image = self._images.get(key)
        if image is None:
            raise errors.NotFound(f"image {key} not found in the fake registry")
        for digest, data in image.blobs.items():
            self._content.write_blob(data, digest)
        for layer in image.layers:
            if progress is not None:
                progress(Progress(ref=key, layer=layer.digest, done=layer.size, total=layer.size))
        return PullResult(
            reference=ref,
            manifest_digest=image.manifest_digest,
            index_digest=image.index_digest,
            config_digest=image.config_digest,
            config=dict(image.config),
            layers=image.layers,
            diff_ids=image.diff_ids,
            size=sum(len(image.blobs[d]) for d in image.blobs if d != image.index_digest),
        )
