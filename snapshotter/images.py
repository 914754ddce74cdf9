"""The image store: images, their layers and blobs, kept together and durably.

    pull(ref) ─► Puller ─► blobs in the content store ──(PullStages: plan, each blob stored)
                              │
              each missing layer, as soon as its blob is in (two at a time, while later
              blobs download): prepare("extract/…", no parent) ─► apply_layer
                              │   (blob size and diff_id verified; the blob digest too,
                              │    unless this process hashed it as it stored it)
                              │   ─► once the layer below is committed: commit(chain id) onto it
                              ▼
              images.db: image row (config, top chain id, blobs it keeps) + refs (tags, digests)

Layers are committed snapshots named by chain id, so images share them.
Reference counting is by reachability, computed when something is freed:
a blob lives while an image lists it; a committed snapshot lives while it
is some image's top layer or has children (a layer above it, or a
container's rootfs). Sweeps wait while a pull or import is in flight, so
they never delete what a pull has fetched but not yet recorded.

Crash safety. The image row is written (one transaction, synchronous=FULL)
only after its layers are committed; removal deletes the rows first and the
files after, so whatever a crash interrupts is unreferenced and `recover()`
sweeps it. Assumptions recover() relies on: nobody else writes under the
roots; snapshots keyed "extract/…" are unfinished unpacks; partial ingests
are stale after a restart.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeVar

import structlog

from snapshotter import errors, imports, layerview
from snapshotter.api import FsUsage, Image, Kind, LayerBlob, Mount, ResolvedImage, as_layer_blobs
from snapshotter.content import ContentStore
from snapshotter.fsutil import mountpoint_of
from snapshotter.gc import Collector
from snapshotter.mount import writable_dir
from snapshotter.overlay import OverlaySnapshotter, open_db
from snapshotter.puller import Progress, Puller, PullResult, PullStages, first_error
from snapshotter.reference import Reference, is_image_id, parse
from snapshotter.registry.auth import Credentials
from snapshotter.streams import Readable, VerifyingReader
from snapshotter.unpack import DEFAULT_LIMITS, LayerStats, UnpackLimits, apply_layer

__all__ = ["FsUsage", "Image", "ImagePuller", "ImageStore", "Mount", "chain_ids", "ref_key"]

log = structlog.get_logger(__name__)

EXTRACT_PREFIX: Final = "extract/"
ROOTFS_PREFIX: Final = "rootfs/"
LABEL_IMAGE: Final = "berth.io/image"
LABEL_CHAIN: Final = "berth.io/unpack-chain"
MIN_ID_PREFIX: Final = 6
_HEX_PREFIX = re.compile(r"[a-f0-9]+")
# How long an interrupted pull's downloads survive a restart unclaimed (seconds).
RESUME_GRACE: Final = 3600.0
# Layers of one pull unpacked side by side while later ones download. Unpacking is mostly
# hashing, inflating and writing outside the GIL; each holds ~10 MiB of buffers.
UNPACK_AT_ONCE: Final = 2
T = TypeVar("T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    chain_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    config TEXT NOT NULL,
    blobs TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    pulled_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    ref TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS pulls (
    token TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    started_ns INTEGER NOT NULL
);
"""


class ImagePuller(Protocol):
    """What the store needs of a puller (`snapshotter.puller.Puller`, or a fake in tests)."""

    async def pull(
        self,
        ref: Reference,
        *,
        auth: Credentials | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> PullResult: ...


def chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """OCI chain ids: the first layer's diff_id, then sha256("<parent chain> <diff_id>")."""
    out: list[str] = []
    for diff_id in diff_ids:
        if out:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
        else:
            out.append(diff_id)
    return out


def ref_key(ref: Reference) -> str:
    """How a reference is stored: "name@digest" if it has a digest (the tag is then moot)."""
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag}"


def resolved_from_pull(result: PullResult) -> ResolvedImage:
    ref = result.reference
    digests = {result.repo_digest}
    if ref.digest is not None:  # pulled by the digest of a manifest inside an index
        digests.add(ref_key(ref))
    blobs = [result.manifest_digest, result.config_digest, *(x.digest for x in result.layers)]
    if result.index_digest:
        blobs.append(result.index_digest)
    return ResolvedImage(
        repo_tags=() if ref.digest is not None else (ref_key(ref),),
        repo_digests=tuple(sorted(digests)),
        config_digest=result.config_digest,
        config=result.config,
        layers=as_layer_blobs(result.layers),
        diff_ids=result.diff_ids,
        blobs=tuple(dict.fromkeys(blobs)),
        size=result.size,
    )


class ImageStore:
    """Images, layers and blobs under `root` (see the module docstring).

    Sync methods block on sqlite and the filesystem; from async code call
    them in a thread (they are thread-safe).
    """

    def __init__(
        self,
        root: Path,
        *,
        puller: ImagePuller,
        content: ContentStore,
        snapshotter: OverlaySnapshotter,
        pinned: Collection[str] = (),
        limits: UnpackLimits = DEFAULT_LIMITS,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._puller = puller
        self._content = content
        self._snaps = snapshotter
        self._limits = limits
        self._pinned = {_normalise_pin(p) for p in pinned}
        self._lock = threading.RLock()
        self._db = open_db(root / "images.db")
        self._db.executescript(_SCHEMA)
        self._gc = Collector(
            snapshotter=snapshotter,
            content=content,
            live=self._live,
            unfinished_prefix=EXTRACT_PREFIX,
            resume_grace=RESUME_GRACE,
        )
        self._layer_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._unpack_slots = asyncio.Semaphore(UNPACK_AT_ONCE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- pulling and importing ----------------------------------------------

    async def pull(
        self,
        ref: str,
        *,
        auth: Credentials | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> Image:
        """Pull `ref`, unpack its missing layers and record it; returns the image.

        Concurrent pulls share downloads (the Puller) and unpacking (one per
        chain id). A tag that pointed at another image moves here. Raises the
        Puller's errors, and InvalidArgument for a hostile or corrupt layer.
        """
        reference = parse(ref)
        token = await asyncio.to_thread(self._journal_pull, str(reference))
        try:
            async with self._gc.lease():
                result = await self._pull_unpacking(reference, auth, progress)
                image_id = await self._store(resolved_from_pull(result))
        finally:
            await _in_thread_to_the_end(self._end_pull, token)
        return await asyncio.to_thread(self.get, image_id)

    async def _pull_unpacking(
        self,
        reference: Reference,
        auth: Credentials | None,
        progress: Callable[[Progress], None] | None,
    ) -> PullResult:
        """The pull, with each layer unpacked as soon as its blob and its parent are in.

        Unpacking layer n overlaps downloading the layers above it. A puller that cannot
        report stages (a test fake) is pulled whole first; `_store` unpacks what is left.
        """
        if not isinstance(self._puller, Puller):
            return await self._puller.pull(reference, auth=auth, progress=progress)
        stages = PullStages()
        pulling = asyncio.ensure_future(
            self._puller.pull(reference, auth=auth, progress=progress, stages=stages)
        )
        try:
            await self._unpack_stages(stages)
        except BaseException:
            # An unpack failed (or we were cancelled): the downloads are of no more use.
            pulling.cancel()
            await asyncio.wait({pulling})
            if not pulling.cancelled():
                pulling.exception()  # retrieved: the unpack's error is the one to report
            raise
        return await pulling

    async def _unpack_stages(self, stages: PullStages) -> None:
        """Unpack the plan's layers as their blobs arrive, up to `UNPACK_AT_ONCE` side by
        side, each into its own parentless snapshot; commit them in chain order. Stops
        (leaving the rest to `_store`) when the pull ends without a blob."""
        plan = await stages.until_plan()
        if plan is None:
            return
        chains = chain_ids(plan.diff_ids)
        layers = as_layer_blobs(plan.layers)
        loop = asyncio.get_running_loop()
        prepared = [loop.create_future() for _ in layers]
        committed: list[asyncio.Future[bool]] = [loop.create_future() for _ in layers]
        try:
            async with asyncio.TaskGroup() as group:
                for i, (layer, diff_id, chain) in enumerate(
                    zip(layers, plan.diff_ids, chains, strict=True)
                ):
                    step = _Step(
                        layer=layer,
                        diff_id=diff_id,
                        chain=chain,
                        parent=chains[i - 1] if i else None,
                        prepared_below=prepared[i - 1] if i else None,
                        prepared=prepared[i],
                        committed_below=committed[i - 1] if i else None,
                        committed=committed[i],
                    )
                    group.create_task(self._stage_layer(stages, step))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None

    async def _stage_layer(self, stages: PullStages, step: _Step) -> None:
        """One layer of `_unpack_stages`. Snapshots are prepared in chain order (parents get
        the lower ids, which sweeps rely on), extracted when the blob is in, and committed
        once the layer below is. Sets `step.committed` to whether the chain now exists."""
        key = ""
        try:
            async with self._chain_lock(step.chain):
                if await asyncio.to_thread(self._has_layer, step.chain):
                    _settle(step.prepared, True)
                    _settle(step.committed, True)
                    return
                if step.prepared_below is not None:
                    await step.prepared_below
                key = f"{EXTRACT_PREFIX}{secrets.token_hex(8)}/{step.chain}"
                await _in_thread_to_the_end(self._prepare_extract, key, step.chain)
                _settle(step.prepared, True)
                if not await stages.until_stored(step.layer.digest):
                    _settle(step.committed, False)  # the pull failed: awaiting it says why
                    return
                async with self._unpack_slots:
                    started = time.monotonic()
                    stats = await _in_thread_to_the_end(
                        self._extract, step.layer, step.diff_id, key
                    )
                if step.committed_below is not None and not await step.committed_below:
                    _settle(step.committed, False)
                    return
                done = await _in_thread_to_the_end(self._commit_layer, key, step.chain, step.parent)
                key = ""  # committed, or removed as a duplicate
                if done:
                    self._log_unpacked(step.layer, step.chain, stats, started)
                _settle(step.committed, True)
        finally:
            _settle(step.prepared, False)
            _settle(step.committed, False)
            if key:
                await _in_thread_to_the_end(self._discard, key)

    def _journal_pull(self, ref: str) -> str:
        """Record durably that a pull is under way, so a crash mid-pull is recognised."""
        token = secrets.token_hex(8)
        with self._tx() as db:
            db.execute(
                "INSERT INTO pulls (token, ref, started_ns) VALUES (?, ?, ?)",
                (token, ref, time.time_ns()),
            )
        return token

    def _end_pull(self, token: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM pulls WHERE token = ?", (token,))

    async def import_archive(self, path: Path) -> list[Image]:
        """Import an OCI image layout tar or a `docker save` tar; returns the images in it."""
        scratch = self.root / "tmp" / secrets.token_hex(8)
        async with self._gc.lease():
            try:
                found = await asyncio.to_thread(imports.load_archive, path, self._content, scratch)
            finally:
                await asyncio.to_thread(shutil.rmtree, scratch, True)
            ids = [await self._store(r) for r in found]
        return [await asyncio.to_thread(self.get, i) for i in dict.fromkeys(ids)]

    async def _store(self, image: ResolvedImage) -> str:
        chains = chain_ids(image.diff_ids)
        parent: str | None = None
        for layer, diff_id, chain in zip(image.layers, image.diff_ids, chains, strict=True):
            await self._ensure_layer(layer, diff_id, chain, parent)
            parent = chain
        await _in_thread_to_the_end(self._record, image, parent or "")
        return image.config_digest

    async def _ensure_layer(
        self, layer: LayerBlob, diff_id: str, chain: str, parent: str | None
    ) -> None:
        async with self._chain_lock(chain):
            if not await asyncio.to_thread(self._has_layer, chain):
                await _in_thread_to_the_end(self._unpack, layer, diff_id, chain, parent)

    @contextlib.asynccontextmanager
    async def _chain_lock(self, chain: str) -> AsyncIterator[None]:
        """One unpack per chain id at a time, across concurrent pulls and imports."""
        lock, users = self._layer_locks.get(chain, (asyncio.Lock(), 0))
        self._layer_locks[chain] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._layer_locks[chain]
            if users == 1:
                del self._layer_locks[chain]
            else:
                self._layer_locks[chain] = (lock, users - 1)

    def _has_layer(self, chain: str) -> bool:
        try:
            info = self._snaps.stat(chain)
        except errors.NotFound:
            return False
        if info.kind is not Kind.COMMITTED:
            raise errors.FailedPrecondition(f"snapshot {chain} exists but is not committed")
        return True

    def _unpack(self, layer: LayerBlob, diff_id: str, chain: str, parent: str | None) -> None:
        started = time.monotonic()
        key = f"{EXTRACT_PREFIX}{secrets.token_hex(8)}/{chain}"
        self._snaps.prepare(key, parent, labels={LABEL_CHAIN: chain})
        stats = self._extract(layer, diff_id, key)
        try:
            self._snaps.commit(chain, key)
        except errors.AlreadyExists:
            # Chain ids name content: whoever committed it first made the same layer.
            self._snaps.remove(key)
            return
        except BaseException as exc:
            self._discard(key)
            self._raise_if_disk_full(exc, layer)
            raise
        self._log_unpacked(layer, chain, stats, started)

    def _prepare_extract(self, key: str, chain: str) -> None:
        self._snaps.prepare(key, None, labels={LABEL_CHAIN: chain})

    def _extract(self, layer: LayerBlob, diff_id: str, key: str) -> LayerStats:
        """Apply the layer's blob into active snapshot `key`; on failure remove the snapshot."""
        try:
            return self._apply(layer, diff_id, writable_dir(self._snaps.mounts(key)))
        except BaseException as exc:
            self._discard(key)
            self._raise_if_disk_full(exc, layer)
            raise

    def _commit_layer(self, key: str, chain: str, parent: str | None) -> bool:
        """Commit parentless `key` as `chain` on `parent`; False if `chain` existed already
        (then `key` is removed). On failure `key` is removed too."""
        try:
            self._snaps.commit_onto(chain, key, parent)
        except errors.AlreadyExists:
            # Chain ids name content: whoever committed it first made the same layer.
            self._discard(key)
            return False
        except BaseException as exc:
            self._discard(key)
            self._raise_if_disk_full(exc, None)
            raise
        return True

    def _discard(self, key: str) -> None:
        """Remove unfinished snapshot `key`, its files first: with a full disk, not even the
        metadata update could run before space is freed."""
        with contextlib.suppress(errors.Error, sqlite3.Error):
            shutil.rmtree(writable_dir(self._snaps.mounts(key)), ignore_errors=True)
            self._snaps.remove(key)

    def _raise_if_disk_full(self, exc: BaseException, layer: LayerBlob | None) -> None:
        if errors.is_disk_full(exc):
            what = f"unpacking layer {layer.digest}" if layer else "committing a layer"
            raise errors.ResourceExhausted(
                f"No space left on device under {self.root.parent} while {what}: {exc}"
            ) from exc

    @staticmethod
    def _log_unpacked(layer: LayerBlob, chain: str, stats: LayerStats, started: float) -> None:
        log.info(
            "layer unpacked",
            digest=layer.digest,
            chain_id=chain,
            size=stats.size,
            entries=stats.entries,
            duration_ms=round((time.monotonic() - started) * 1000),
        )

    def _apply(self, layer: LayerBlob, diff_id: str, dest: Path) -> LayerStats:
        """Extract the blob into `dest`. A blob this process verified as it stored it (every
        download and import) is not hashed again, only its size checked; any other is."""
        try:
            blob, verified = self._content.open_blob(layer.digest)
        except errors.NotFound:
            raise errors.NotFound(
                f"layer blob {layer.digest} missing from the content store"
            ) from None
        with blob:
            if verified:
                size = os.fstat(blob.fileno()).st_size
                if size != layer.size:
                    raise errors.InvalidArgument(
                        f"blob {layer.digest}: {size} bytes, manifest says {layer.size}"
                    )
                return self._apply_from(blob, layer, diff_id, dest)
            src = VerifyingReader(blob, digest=layer.digest, size=layer.size)
            stats = self._apply_from(src, layer, diff_id, dest)
            src.verify()
        return stats

    def _apply_from(self, src: Readable, layer: LayerBlob, diff_id: str, dest: Path) -> LayerStats:
        return apply_layer(
            src,
            layer.media_type,
            dest,
            layer=layer.digest,
            expected_diff_id=diff_id,
            limits=self._limits,
        )

    def _record(self, image: ResolvedImage, chain: str) -> None:
        now = time.time_ns()
        with self._tx() as db:
            row = db.execute(
                "SELECT blobs FROM images WHERE id=?", (image.config_digest,)
            ).fetchone()
            blobs = sorted(set(image.blobs) | set(json.loads(row[0]) if row else ()))
            db.execute(
                "INSERT INTO images (id, chain_id, size, config, blobs, created_ns, pulled_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " chain_id=excluded.chain_id, size=excluded.size, config=excluded.config,"
                " blobs=excluded.blobs, pulled_ns=excluded.pulled_ns",
                (
                    image.config_digest,
                    chain,
                    image.size,
                    json.dumps(image.config),
                    json.dumps(blobs),
                    now,
                    now,
                ),
            )
            moved = {self._point(db, t, "tag", image.config_digest) for t in image.repo_tags}
            for d in image.repo_digests:
                self._point(db, d, "digest", image.config_digest)
            dropped = [i for i in moved if i and not self._has_refs(db, i)]
            for old in dropped:
                db.execute("DELETE FROM images WHERE id=?", (old,))
        log.info("image recorded", image_id=image.config_digest, tags=list(image.repo_tags))
        if dropped:
            log.info("images left without references removed", image_ids=dropped)
            self._gc.collect()

    @staticmethod
    def _point(db: sqlite3.Connection, ref: str, kind: str, image_id: str) -> str | None:
        """Make `ref` name `image_id`; returns the image it named before, if another."""
        row = db.execute("SELECT image_id FROM refs WHERE ref=?", (ref,)).fetchone()
        db.execute(
            "INSERT INTO refs (ref, kind, image_id) VALUES (?, ?, ?)"
            " ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id",
            (ref, kind, image_id),
        )
        return row[0] if row and row[0] != image_id else None

    @staticmethod
    def _has_refs(db: sqlite3.Connection, image_id: str) -> bool:
        return db.execute("SELECT 1 FROM refs WHERE image_id=?", (image_id,)).fetchone() is not None

    # --- lookup ---------------------------------------------------------------

    def get(self, ref_or_id: str) -> Image:
        """The image named by a tag ref, "name@digest", full id, id hex or unique id prefix.

        NotFound otherwise (an ambiguous prefix included).
        """
        with self._lock:
            return self._load(self._resolve(ref_or_id))

    def list(self) -> list[Image]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM images ORDER BY id")]
            return [self._load(i) for i in ids]

    def _resolve(self, ref_or_id: str) -> str:
        s = ref_or_id.strip()
        hexpart = s.removeprefix("sha256:")
        if is_image_id(s) and self._exists("sha256:" + hexpart):
            return "sha256:" + hexpart
        with contextlib.suppress(errors.InvalidArgument):
            row = self._db.execute(
                "SELECT image_id FROM refs WHERE ref=?", (ref_key(parse(s)),)
            ).fetchone()
            if row:
                return str(row[0])
        if len(hexpart) >= MIN_ID_PREFIX and _HEX_PREFIX.fullmatch(hexpart):
            rows = self._db.execute(
                "SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                ("sha256:" + hexpart, "sha256:" + hexpart + "g"),
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0][0])
        raise errors.NotFound(f"image {ref_or_id!r} not found")

    def _exists(self, image_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is not None
        )

    def _load(self, image_id: str) -> Image:
        row = self._db.execute(
            "SELECT chain_id, size, config, created_ns, pulled_ns FROM images WHERE id=?",
            (image_id,),
        ).fetchone()
        if row is None:
            raise errors.NotFound(f"image {image_id} not found")
        refs = self._db.execute(
            "SELECT ref, kind FROM refs WHERE image_id=? ORDER BY ref", (image_id,)
        ).fetchall()
        tags = tuple(r for r, k in refs if k == "tag")
        return Image(
            id=image_id,
            repo_tags=tags,
            repo_digests=tuple(r for r, k in refs if k == "digest"),
            size=row[1],
            config=json.loads(row[2]),
            chain_id=row[0],
            pinned=image_id in self._pinned or any(t in self._pinned for t in tags),
            created_at_ns=row[3],
            pulled_at_ns=row[4],
        )

    # --- removal and garbage collection ---------------------------------------

    async def remove(self, ref_or_id: str) -> None:
        """Remove the image with all its tags and digests, then free what nothing else uses.

        Idempotent: an unknown image is not an error.
        """
        try:
            image = await asyncio.to_thread(self.get, ref_or_id)
        except errors.NotFound:
            return
        await asyncio.to_thread(self._delete_image, image.id)

    def _delete_image(self, image_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM images WHERE id=?", (image_id,))
        log.info("image removed", image_id=image_id)
        self._gc.collect()

    def _live(self) -> tuple[set[str], set[str]]:
        with self._lock:
            rows = self._db.execute("SELECT chain_id, blobs FROM images").fetchall()
        return {r[0] for r in rows}, {b for r in rows for b in json.loads(r[1])}

    def recover(self) -> None:
        """At start-up: drop crash leftovers and everything no image or rootfs references.

        When the crash interrupted a pull (its journal row is still there), what it had
        fetched — whole blobs and partial ingests written in the last `RESUME_GRACE` seconds —
        is kept so the retried pull resumes instead of downloading again; any later sweep
        frees it if no image claims it. Everything else unreferenced goes now.
        """
        self._snaps.cleanup()
        self._content.remove_partial_writes()
        with self._tx() as db:
            interrupted = db.execute("SELECT count(*) FROM pulls").fetchone()[0]
            db.execute("DELETE FROM pulls")
        grace = RESUME_GRACE if interrupted else 0.0
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        self._gc.recover(keep_younger_than=grace)
        log.info("image store recovered", images=len(self._live()[0]))

    def expire_leftovers(self) -> None:
        """Free what failed or interrupted pulls kept to resume from once it is older than
        `RESUME_GRACE` (berthd runs this periodically). Blocking."""
        self._gc.expire()

    # --- container root filesystems -------------------------------------------

    def prepare_rootfs(self, key: str, image_id: str) -> builtins.list[Mount]:
        """A writable snapshot `key` (a container id) on top of the image's layers.

        AlreadyExists if `key` has one; NotFound if the image does not exist.
        """
        image = self.get(image_id)
        with _rootfs_exists(key):
            return self._snaps.prepare(
                ROOTFS_PREFIX + key, image.chain_id or None, labels={LABEL_IMAGE: image.id}
            )

    def view_rootfs(self, key: str, image_id: str) -> builtins.list[Mount]:
        """A read-only view of the image's layers (image volumes); errors as prepare_rootfs."""
        image = self.get(image_id)
        with _rootfs_exists(key):
            return self._snaps.view(
                ROOTFS_PREFIX + key, image.chain_id or None, labels={LABEL_IMAGE: image.id}
            )

    def rootfs_mounts(self, key: str) -> builtins.list[Mount]:
        """The mounts of rootfs `key` again; NotFound if it has none."""
        try:
            return self._snaps.mounts(ROOTFS_PREFIX + key)
        except errors.NotFound:
            raise errors.NotFound(f"rootfs {key} not found") from None

    def rootfs_keys(self) -> builtins.list[str]:
        """Keys of every rootfs (writable or view), e.g. to find orphans after a crash."""
        infos = self._snaps.walk()
        return [i.key.removeprefix(ROOTFS_PREFIX) for i in infos if i.key.startswith(ROOTFS_PREFIX)]

    def remove_rootfs(self, key: str) -> None:
        """Delete the rootfs snapshot `key` (idempotent) and any layers only it kept alive.

        Layers can only have been kept alive by it when its image is gone, so the sweep runs
        only then: removing a container of a present image stays cheap.
        """
        try:
            image_id = self._snaps.stat(ROOTFS_PREFIX + key).labels.get(LABEL_IMAGE, "")
            self._snaps.remove(ROOTFS_PREFIX + key)
        except errors.NotFound:
            return
        with self._lock:
            image_present = bool(image_id) and self._exists(image_id)
        if not image_present:
            self._gc.collect()

    # --- reading images and usage ---------------------------------------------

    def read_image_file(self, image_id: str, path: str, max_size: int = 1 << 20) -> bytes | None:
        """File `path` of the image (e.g. /etc/passwd) without mounting; None if absent."""
        image = self.get(image_id)
        if not image.chain_id:
            return None
        return layerview.read_file(self._snaps.layer_dirs(image.chain_id), path, max_size)

    def fs_usage(self) -> FsUsage:
        """Bytes and inodes used by all snapshots, and the mount point holding them."""
        size = inodes = 0
        for info in self._snaps.walk():
            with contextlib.suppress(errors.NotFound):
                usage = self._snaps.usage(info.key)
                size += usage.size
                inodes += usage.inodes
        return FsUsage(
            mountpoint=mountpoint_of(self._snaps.root), used_bytes=size, inodes_used=inodes
        )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


async def _in_thread_to_the_end(fn: Callable[..., T], *args: object) -> T:
    """Run `fn` in a thread. A thread cannot be stopped, so if the caller is cancelled
    this still waits for it before re-raising: the locks and the lease held around
    it must not be released while it still writes."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.debug("work abandoned by a cancelled caller failed", error=str(task.exception()))
        raise


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Step:
    """One layer of a staged unpack, with the futures linking it to the layer below."""

    layer: LayerBlob
    diff_id: str
    chain: str
    parent: str | None
    prepared_below: asyncio.Future[bool] | None
    prepared: asyncio.Future[bool]
    committed_below: asyncio.Future[bool] | None
    committed: asyncio.Future[bool]


@contextlib.contextmanager
def _rootfs_exists(key: str) -> Iterator[None]:
    try:
        yield
    except errors.AlreadyExists:
        raise errors.AlreadyExists(f"rootfs {key} already exists") from None


def _normalise_pin(ref: str) -> str:
    if is_image_id(ref):
        return "sha256:" + ref.removeprefix("sha256:")
    return ref_key(parse(ref))
