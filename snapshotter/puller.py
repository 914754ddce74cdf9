"""Pulling an image: resolve the reference, pick this platform's manifest, fetch its blobs.

    reference ──manifest GET──► index? ──platform──► manifest ──► config ──► layers (concurrent)
                                   │                     │            │           │
                                   └──── every document and blob lands in the content store

Every document is validated against its media type and bounded in size; every
blob is verified by size and sha256 while it streams into the content store.
Blobs already in the store are not fetched; a partial ingest (a crash, a broken
transfer) is continued with a Range request. Downloads are shared: concurrent
pulls of one reference with the same credentials share the whole pull, and
pulls that need the same blob share its single download. Shared work runs in
tasks owned by the Puller; a pull whose caller goes away stops the work only
when nobody else is waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import structlog

from snapshotter import errors
from snapshotter.content import ContentStore, Ingest
from snapshotter.descriptors import (
    INDEX_TYPES,
    MAX_CONFIG_SIZE,
    Descriptor,
    ImageConfig,
    Platform,
    detect_media_type,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from snapshotter.reference import Reference
from snapshotter.registry.auth import Credentials
from snapshotter.registry.client import FetchedManifest, RegistryClient
from snapshotter.registry.hosts import RegistryHosts

log = structlog.get_logger(__name__)

T = TypeVar("T")
K = TypeVar("K")
_MAX_INDEX_DEPTH: Final = 3
_PROGRESS_BYTES: Final = 256 << 10
# Network chunks are gathered into writes of this size, done in a thread (few hand-offs);
# at most twice this is held per download while a write joins them. 4 MiB took berthd's
# peak RSS during the 120 MB bench pull from ~92 to ~180 MiB, for no CPU saved.
_WRITE_SIZE: Final = 1 << 20
_PROGRESS_SECONDS: Final = 1.0
_LOG_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Bytes of one layer held so far (`done` counts a resumed partial)."""

    ref: str
    layer: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PullPlan:
    """What a pull fetches, known once its manifest and config are: the layers in order."""

    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


class PullStages:
    """How far a pull has got, for a caller that unpacks layers while later ones download.

    Pass one to `Puller.pull`; it learns the plan once the config is in, then each layer
    blob once it is committed (verified) in the content store. It is closed when that
    `pull` call returns or fails, so waiting on it never outlives the pull.
    """

    def __init__(self) -> None:
        self.plan: PullPlan | None = None
        self.stored: set[str] = set()
        self.closed = False
        self._changed = asyncio.Event()

    def _set_plan(self, plan: PullPlan) -> None:
        self.plan = plan
        self._changed.set()

    def _add(self, digest: str) -> None:
        self.stored.add(digest)
        self._changed.set()

    def _close(self) -> None:
        self.closed = True
        self._changed.set()

    async def until_plan(self) -> PullPlan | None:
        """The plan, or None if the pull ended without one (it failed)."""
        while self.plan is None and not self.closed:
            await self._wait()
        return self.plan

    async def until_stored(self, digest: str) -> bool:
        """True once blob `digest` is in the content store; False if the pull ended first."""
        while digest not in self.stored and not self.closed:
            await self._wait()
        return digest in self.stored

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    """What a pull left in the content store; the image id is `config_digest`."""

    reference: Reference
    manifest_digest: str
    index_digest: str | None
    config_digest: str
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    size: int

    @property
    def repo_digest(self) -> str:
        """`name@digest` of what the reference resolved to (the index if there was one)."""
        return f"{self.reference.name}@{self.index_digest or self.manifest_digest}"


_Start = Callable[["_Shared[T]"], Coroutine[Any, Any, T]]


class _Shared(Generic[T]):
    """A task several callers await; cancelled only when its last waiter goes away."""

    def __init__(self, start: _Start[T], owner: set[asyncio.Task[Any]]) -> None:
        self.callbacks: list[ProgressFn] = []  # progress listeners of every waiter
        self.stages = _Fanout()  # what the (pull) task reached, told to every waiter's stages
        self.task: asyncio.Task[T] = asyncio.get_running_loop().create_task(start(self))
        self._waiters = 0
        self._abandoned = False
        owner.add(self.task)
        self.task.add_done_callback(owner.discard)

    @property
    def waiters(self) -> int:
        return self._waiters

    @property
    def joinable(self) -> bool:
        return not self.task.done() and not self._abandoned

    async def wait(self) -> T:
        self._waiters += 1
        try:
            return await asyncio.shield(self.task)
        except asyncio.CancelledError:
            if self._waiters == 1 and not self.task.done():
                self._abandoned = True
                self.task.cancel()
            raise
        finally:
            self._waiters -= 1


class _Fanout:
    """A shared pull's milestones, replayed to the stages of callers that join late."""

    def __init__(self) -> None:
        self.plan: PullPlan | None = None
        self.stored: list[str] = []
        self.listeners: list[PullStages] = []

    def attach(self, stages: PullStages) -> None:
        if self.plan is not None:
            stages._set_plan(self.plan)
        for digest in self.stored:
            stages._add(digest)
        self.listeners.append(stages)

    def detach(self, stages: PullStages) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove(stages)
        stages._close()

    def set_plan(self, plan: PullPlan) -> None:
        self.plan = plan
        for stages in self.listeners:
            stages._set_plan(plan)

    def add(self, digest: str) -> None:
        self.stored.append(digest)
        for stages in self.listeners:
            stages._add(digest)


def _join(
    table: dict[K, _Shared[T]],
    key: K,
    start: _Start[T],
    owner: set[asyncio.Task[Any]],
) -> _Shared[T]:
    """The joinable shared task under `key`, started if there is none."""
    shared = table.get(key)
    if shared is not None and shared.joinable:
        return shared
    created = _Shared(start, owner)
    table[key] = created

    def forget(_: object) -> None:
        if table.get(key) is created:
            del table[key]

    created.task.add_done_callback(forget)
    return created


class _Tracker:
    """Progress of one pull: throttled callbacks per layer and a periodic log line."""

    def __init__(
        self, ref: Reference, layers: tuple[Descriptor, ...], callbacks: list[ProgressFn]
    ) -> None:
        self.ref = str(ref)
        self.callbacks = callbacks
        self._total = {d.digest: d.size for d in layers}
        self._done = dict.fromkeys(self._total, 0)
        self._reported: dict[str, tuple[int, float]] = {}
        self._logged = time.monotonic()

    def update(self, digest: str, done: int) -> None:
        self._done[digest] = done
        last_bytes, last_time = self._reported.get(digest, (-1, 0.0))
        now, total = time.monotonic(), self._total[digest]
        if (
            done - last_bytes >= _PROGRESS_BYTES
            or now - last_time >= _PROGRESS_SECONDS
            or (done == total and last_bytes != total)
        ):
            self._reported[digest] = (done, now)
            event = Progress(ref=self.ref, layer=digest, done=done, total=total)
            for callback in list(self.callbacks):
                callback(event)
        if now - self._logged >= _LOG_SECONDS:
            self._logged = now
            self.log()

    def log(self) -> None:
        log.info(
            "pull progress",
            image=self.ref,
            done_bytes=sum(self._done.values()),
            total_bytes=sum(self._total.values()),
            layers_done=sum(self._done[d] == t for d, t in self._total.items()),
            layers=len(self._total),
        )


async def _settle(
    fn: Callable[..., T], *args: Any, cleanup: Callable[[T], None] | None = None
) -> T:
    """Run blocking `fn` in a thread. If we are cancelled meanwhile, let it finish before
    re-raising (and `cleanup` its result), so no file is closed under a thread still
    writing it, nor left open because its opener was cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        if cleanup is not None and not task.cancelled() and task.exception() is None:
            cleanup(task.result())
        raise


class _IngestSink:
    """The client's BlobSink over a content-store Ingest.

    Network chunks are gathered into ~1 MiB writes done in a thread; bytes still
    in the buffer count in `offset`, so a broken transfer resumes after them.
    """

    def __init__(self, ingest: Ingest, on_progress: Callable[[int], None]) -> None:
        self._ingest = ingest
        self._on_progress = on_progress
        self._chunks: list[bytes] = []
        self._buffered = 0

    @property
    def offset(self) -> int:
        return self._ingest.offset + self._buffered

    async def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= _WRITE_SIZE or self.offset > self._ingest.size:
            await self._flush()
        self._on_progress(self.offset)

    def _take(self) -> list[bytes]:
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        return chunks

    async def _flush(self) -> None:
        await _settle(self._ingest.writev, self._take())

    def flush_sync(self) -> None:
        """Keep what was received for a later resume (used when giving up)."""
        with contextlib.suppress(errors.Error, ValueError, OSError):
            self._ingest.writev(self._take())

    async def reset(self) -> None:
        self._take()
        await _settle(self._ingest.truncate)
        self._on_progress(0)

    async def verify(self) -> None:
        await self._flush()
        await _settle(self._ingest.verify)


class Puller:
    """Pulls images from registries into a ContentStore (see the module docstring)."""

    def __init__(
        self,
        content: ContentStore,
        hosts: RegistryHosts,
        *,
        platform: Platform | None = None,
        max_concurrent_downloads: int = 3,
        stall_timeout: float = 300.0,
        credentials: Mapping[str, Credentials] | None = None,
        retries: int = 3,
        client: RegistryClient | None = None,
    ) -> None:
        """`client` replaces the registry client (tests pass one over a fake transport)."""
        self._content = content
        self._platform = platform or host_platform()
        self._client = client or RegistryClient(
            hosts, credentials=credentials, retries=retries, stall_timeout=stall_timeout
        )
        self._semaphore = asyncio.Semaphore(max_concurrent_downloads)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pulls: dict[tuple[str, str], _Shared[PullResult]] = {}
        self._downloads: dict[str, _Shared[None]] = {}
        self._listeners: dict[str, list[Callable[[str, int], None]]] = {}

    async def aclose(self) -> None:
        """Cancel work in flight, wait for it, close connections. Idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    def downloads_in_flight(self) -> dict[str, int]:
        """Blob digest → number of pulls waiting for its download (for metrics and tests)."""
        return {digest: shared.waiters for digest, shared in self._downloads.items()}

    async def pull(
        self,
        ref: Reference,
        *,
        auth: Credentials | None = None,
        progress: ProgressFn | None = None,
        stages: PullStages | None = None,
    ) -> PullResult:
        """Pull `ref` for this Puller's platform; idempotent (stored blobs are reused).

        `stages` learns the layers and each stored layer blob while the pull runs.
        Raises NotFound (no such repository, tag, digest or platform), Unavailable
        (no registry host reachable), Unauthorized (a FailedPrecondition),
        InvalidArgument (malformed or hostile content), DeadlineExceeded (a stalled layer).
        """
        key = (str(ref), auth.fingerprint() if auth else "")
        shared = _join(self._pulls, key, lambda sh: self._pull(ref, auth, sh), self._tasks)
        if progress is not None:
            shared.callbacks.append(progress)
        if stages is not None:
            shared.stages.attach(stages)
        try:
            return await shared.wait()
        finally:
            if progress is not None:
                shared.callbacks.remove(progress)
            if stages is not None:
                shared.stages.detach(stages)

    async def _pull(
        self, ref: Reference, auth: Credentials | None, shared: _Shared[PullResult]
    ) -> PullResult:
        started = time.monotonic()
        root = await self._client.fetch_manifest(ref, ref.object, auth=auth)
        index_digest, fetched, media_type = await self._resolve(ref, root, auth)
        manifest = parse_manifest(fetched.data, media_type, what=f"manifest {fetched.digest}")
        await asyncio.to_thread(self._content.write_blob, fetched.data, fetched.digest)
        tracker = _Tracker(ref, manifest.layers, shared.callbacks)
        config = await self._config(ref, manifest.config, len(manifest.layers), auth)
        shared.stages.set_plan(PullPlan(layers=manifest.layers, diff_ids=config.diff_ids))
        await self._layers(ref, manifest.layers, auth, tracker, shared.stages.add)
        result = PullResult(
            reference=ref,
            manifest_digest=fetched.digest,
            index_digest=index_digest,
            config_digest=manifest.config.digest,
            config=dict(config.raw),
            layers=manifest.layers,
            diff_ids=config.diff_ids,
            size=len(fetched.data) + manifest.config.size + sum(d.size for d in manifest.layers),
        )
        tracker.log()
        log.info(
            "image pulled",
            image=str(ref),
            digest=result.repo_digest,
            image_id=result.config_digest,
            size=result.size,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        return result

    async def _resolve(
        self, ref: Reference, fetched: FetchedManifest, auth: Credentials | None
    ) -> tuple[str | None, FetchedManifest, str]:
        """Follow indexes down to this platform's manifest; returns (top index digest, manifest)."""
        index_digest = None
        media_type = detect_media_type(fetched.data, fetched.content_type)
        for _ in range(_MAX_INDEX_DEPTH):
            if media_type not in INDEX_TYPES:
                return index_digest, fetched, media_type
            index = parse_index(fetched.data, media_type, what=f"index {fetched.digest}")
            await asyncio.to_thread(self._content.write_blob, fetched.data, fetched.digest)
            index_digest = index_digest or fetched.digest
            desc = select_platform(index, self._platform, what=f"image {ref}")
            fetched = await self._client.fetch_manifest(ref, desc.digest, auth=auth)
            if len(fetched.data) != desc.size:
                raise errors.InvalidArgument(
                    f"manifest {desc.digest}: {len(fetched.data)} bytes, index says {desc.size}"
                )
            media_type = desc.media_type
        raise errors.InvalidArgument(f"image {ref}: indexes nested deeper than {_MAX_INDEX_DEPTH}")

    async def _config(
        self, ref: Reference, desc: Descriptor, layers: int, auth: Credentials | None
    ) -> ImageConfig:
        if desc.size > MAX_CONFIG_SIZE:
            raise errors.InvalidArgument(f"image config {desc.digest} is {desc.size} bytes")
        await self._blob(ref, desc, auth, None)
        data = await asyncio.to_thread(self._content.read, desc.digest, MAX_CONFIG_SIZE)
        config = parse_config(data, layers=layers, what=f"image config {desc.digest}")
        if config.platform.os != self._platform.os or (
            config.platform.architecture != self._platform.architecture
        ):
            log.warning(
                "image platform differs from host",
                image=str(ref),
                image_platform=str(config.platform),
                host_platform=str(self._platform),
            )
        return config

    async def _layers(
        self,
        ref: Reference,
        layers: tuple[Descriptor, ...],
        auth: Credentials | None,
        tracker: _Tracker,
        stored: Callable[[str], None],
    ) -> None:
        async def one(desc: Descriptor) -> None:
            await self._blob(ref, desc, auth, tracker)
            stored(desc.digest)

        try:
            async with asyncio.TaskGroup() as group:
                for desc in dict.fromkeys(layers):
                    group.create_task(one(desc))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None

    async def _blob(
        self, ref: Reference, desc: Descriptor, auth: Credentials | None, tracker: _Tracker | None
    ) -> None:
        """Make blob `desc` present in the content store, sharing any download in flight."""
        if await asyncio.to_thread(self._content.exists, desc.digest):
            await self._check_stored_size(desc)
            if tracker is not None:
                tracker.update(desc.digest, desc.size)
            return
        shared = _join(
            self._downloads, desc.digest, lambda _: self._download(ref, desc, auth), self._tasks
        )
        if tracker is None:
            await shared.wait()
        else:
            listeners = self._listeners.setdefault(desc.digest, [])
            listeners.append(tracker.update)
            try:
                await shared.wait()
            finally:
                listeners.remove(tracker.update)
                if not listeners:
                    del self._listeners[desc.digest]
        await self._check_stored_size(desc)  # a shared download was made for its own descriptor

    async def _check_stored_size(self, desc: Descriptor) -> None:
        size = await asyncio.to_thread(self._content.size, desc.digest)
        if size != desc.size:
            raise errors.InvalidArgument(
                f"blob {desc.digest}: descriptor says {desc.size} bytes, the blob has {size}"
            )

    async def _download(self, ref: Reference, desc: Descriptor, auth: Credentials | None) -> None:
        async with self._semaphore:
            if await asyncio.to_thread(self._content.exists, desc.digest):
                return  # committed by a download that finished while we queued
            ingest = await _settle(self._content.ingest, desc.digest, desc.size, cleanup=_close)
            sink = _IngestSink(ingest, lambda done: self._notify(desc.digest, done))
            if ingest.offset:
                log.info("resuming blob", digest=desc.digest, offset=ingest.offset)
            try:
                await self._client.fetch_blob(ref, desc, sink, auth=auth)
                await _settle(ingest.commit)
            except errors.InvalidArgument:
                ingest.abort()
                raise
            except BaseException:
                sink.flush_sync()  # keep the partial for the next attempt to resume
                raise
            finally:
                ingest.close()

    def _notify(self, digest: str, done: int) -> None:
        for listener in list(self._listeners.get(digest, ())):
            listener(digest, done)


def _close(ingest: Ingest) -> None:
    ingest.close()


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed TaskGroup: a berth error first, then anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, errors.Error)), leaves[0])
