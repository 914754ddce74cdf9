"""Contracts of the filesystem side of the image service, and the records they exchange.

A *snapshot* is a directory tree identified by a key. Snapshots form chains:
each has at most one parent, which must be *committed*. The lifecycle::

    prepare(key, parent) ──► ACTIVE (writable) ── commit(name, key) ──► COMMITTED (name)
    view(key, parent)    ──► VIEW   (read-only)                            │
          │                        │                                       │
          └──────── remove(key) ◄──┴──────── remove(name), once it has no children

Keys and names share one namespace. A snapshotter hands out `Mount`
descriptions; it never mounts anything itself (see `snapshotter.mount`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class Kind(enum.StrEnum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One mount(2) to perform on a target the caller chooses.

    `type` is "bind" or "overlay"; `source` the directory (or "overlay");
    `options` are mount(8)-style strings: flags such as "ro"/"rbind" and
    filesystem data such as "lowerdir=...". Overlay lowerdirs are listed
    top layer first, as the kernel expects.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()

    def option(self, name: str) -> str | None:
        """The value of a "name=value" option, or None."""
        prefix = name + "="
        for opt in self.options:
            if opt.startswith(prefix):
                return opt[len(prefix) :]
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    """What is recorded about one snapshot."""

    key: str
    kind: Kind
    parent: str | None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at_ns: int
    updated_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Disk used by one snapshot alone (its parents excluded): allocated bytes and inodes."""

    size: int
    inodes: int


class Snapshotter(Protocol):
    """The containerd-style snapshot contract (see the module docstring for the lifecycle).

    All methods block (metadata writes are durable before they return); call
    them from a thread in async code. Errors are `snapshotter.errors` kinds.
    """

    def prepare(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an ACTIVE, writable snapshot `key` on top of committed `parent`.

        Mounting the result gives the parent's content (empty without a
        parent); changes land in the new snapshot. AlreadyExists if `key` is
        taken; NotFound if `parent` does not exist; FailedPrecondition if it
        is not committed; InvalidArgument for an empty key.
        """
        ...

    def view(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Like `prepare`, but read-only and never committable (same errors)."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an ACTIVE or VIEW snapshot again.

        NotFound if missing; FailedPrecondition for a committed snapshot.
        """
        ...

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Turn ACTIVE `key` into COMMITTED `name` (same parent); `key` ceases to exist.

        NotFound if `key` is missing; FailedPrecondition if it is not active;
        AlreadyExists if `name` is taken.
        """
        ...

    def remove(self, key: str) -> None:
        """Delete a snapshot and its files.

        NotFound if missing (callers wanting idempotency swallow it);
        FailedPrecondition while other snapshots have it as parent.
        """
        ...

    def stat(self, key: str) -> SnapshotInfo:
        """The record of `key`; NotFound if missing."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk usage of `key` alone. Fixed at commit for committed snapshots;
        measured (proportional to the tree) for active ones. NotFound if missing."""
        ...

    def walk(self) -> list[SnapshotInfo]:
        """Every snapshot, parents before their children."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """An image as the image store knows it.

    `id` is the config digest ("sha256:<hex>"); `repo_digests` are
    "name@sha256:<hex>" of the manifest (or index) it was pulled by; `size`
    counts the compressed layers, config, manifest and index, as containerd
    reports it; `chain_id` names the committed snapshot of its top layer.
    """

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    config: dict[str, Any] = field(hash=False)
    chain_id: str
    pinned: bool
    created_at_ns: int
    pulled_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FsUsage:
    """Usage of the filesystem holding the snapshots, for CRI ImageFsInfo."""

    mountpoint: str
    used_bytes: int
    inodes_used: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerBlob:
    """A layer as a manifest lists it: what to fetch from the content store and how to read it."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """Everything needed to unpack and record one image whose blobs are all in the content store.

    Produced by a pull or an archive import. `repo_tags` ("name:tag") and
    `repo_digests` ("name@sha256:...") are normalised references to point at
    the image; `blobs` are the digests the image keeps alive (manifest,
    config, layers, and the index it was selected from, if any).
    """

    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    config_digest: str
    config: Mapping[str, Any] = field(hash=False)
    layers: tuple[LayerBlob, ...]
    diff_ids: tuple[str, ...]
    blobs: tuple[str, ...]
    size: int


class LayerLike(Protocol):
    """Anything describing a layer blob (a puller Descriptor, a LayerBlob)."""

    @property
    def media_type(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...


def as_layer_blobs(layers: Sequence[LayerLike]) -> tuple[LayerBlob, ...]:
    return tuple(LayerBlob(media_type=x.media_type, digest=x.digest, size=x.size) for x in layers)
