"""Freeing what no image uses: committed snapshots and content blobs, by reachability.

Roots are given by the image store (`live()`: each image's top chain id and
the blobs it lists). A committed snapshot stays while it is a root or has a
child — a layer above it, or a container's rootfs — so an image's whole
chain stays through its top. Active and view snapshots are never swept
(containers own them), except unfinished unpacks during recovery.

Pulls hold a *lease* while they fetch and unpack: a sweep then waits, and
runs when the last lease is dropped, so it never deletes a blob or layer a
pull has fetched but not yet recorded. A pull that fails asks for a sweep,
so its whole blobs go too.

Partial downloads (ingests) are what a failed or interrupted pull resumes
from, so a sweep keeps those written in the last `resume_grace` seconds;
`expire()` (run periodically by berthd) keeps blobs of that age as well and
frees everything older, so what a crash left for a retry that never came
does not outlive the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable

import structlog

from snapshotter import errors
from snapshotter.api import Kind, Snapshotter
from snapshotter.content import ContentStore

log = structlog.get_logger(__name__)

Roots = Callable[[], tuple[set[str], set[str]]]


class Collector:
    """Sweeps snapshots and blobs not reachable from `live()` (chain ids, blob digests)."""

    def __init__(
        self,
        *,
        snapshotter: Snapshotter,
        content: ContentStore,
        live: Roots,
        unfinished_prefix: str,
        resume_grace: float,
    ) -> None:
        self._snaps = snapshotter
        self._content = content
        self._live = live
        self._unfinished = unfinished_prefix
        self._grace = resume_grace
        self._lock = threading.Lock()
        self._leases = 0
        self._pending = False

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        """Hold sweeps off for the block; if it fails, sweep its leftovers afterwards."""
        await asyncio.to_thread(self._take)
        try:
            yield
        except BaseException:
            with self._lock:
                self._pending = True
            raise
        finally:
            if self._drop():
                await asyncio.to_thread(self.collect)

    def _take(self) -> None:
        with self._lock:  # waits for a sweep in progress
            self._leases += 1

    def _drop(self) -> bool:
        with self._lock:
            self._leases -= 1
            return self._leases == 0 and self._pending

    def collect(self) -> None:
        """Sweep now, or when the last lease is dropped. Blocking."""
        with self._lock:
            if self._leases:
                self._pending = True
                return
            self._pending = False
            self._sweep(unfinished=False, blobs_grace=0.0, ingests_grace=self._grace)

    def expire(self) -> None:
        """Sweep, keeping unreferenced blobs and ingests younger than the grace; skipped while
        a pull holds a lease (its own sweep follows). Blocking."""
        with self._lock:
            if self._leases:
                return
            self._sweep(unfinished=False, blobs_grace=self._grace, ingests_grace=self._grace)

    def recover(self, *, keep_younger_than: float = 0.0) -> None:
        """Sweep at start-up, unfinished unpacks included (nothing holds a lease yet).

        Blobs written less than `keep_younger_than` seconds ago stay even when no image lists
        them: they are what a pull interrupted by a crash had fetched, and the pull retried
        after the restart finds them instead of downloading them again. Any later sweep
        frees the whole blobs if no image claimed them; `expire()` frees both once older.
        """
        with self._lock:
            self._sweep(
                unfinished=True, blobs_grace=keep_younger_than, ingests_grace=keep_younger_than
            )

    def _sweep(self, *, unfinished: bool, blobs_grace: float, ingests_grace: float) -> None:
        """Free what no image reaches; unreferenced blobs and partial downloads written less
        than their grace (seconds) ago stay."""
        chains, blobs = self._live()
        removed = self._sweep_snapshots(chains, unfinished)
        dropped = [
            d for d in self._content.digests() if d not in blobs and not self._young(d, blobs_grace)
        ]
        for digest in dropped:
            self._content.delete(digest)
        aborted = [
            d for d in self._content.ingests() if not self._young(d, ingests_grace, partial=True)
        ]
        for digest in aborted:
            self._content.abort(digest)
        if removed or dropped or aborted:
            log.info(
                "unused image data freed",
                snapshots=removed,
                blobs=len(dropped),
                partial_downloads=len(aborted),
            )

    def _young(self, digest: str, limit: float, *, partial: bool = False) -> bool:
        try:
            return limit > 0 and self._content.age(digest, partial=partial) < limit
        except errors.NotFound:
            return False

    def _sweep_snapshots(self, live: set[str], unfinished: bool) -> int:
        infos = self._snaps.walk()
        children = Counter(i.parent for i in infos if i.parent)
        removed = 0
        for info in reversed(infos):  # children before their parents
            doomed = info.kind is Kind.COMMITTED and info.key not in live
            doomed = doomed or (unfinished and info.key.startswith(self._unfinished))
            if not doomed or children[info.key]:
                continue
            try:
                self._snaps.remove(info.key)
            except (errors.NotFound, errors.FailedPrecondition):
                continue  # removed meanwhile, or a child appeared
            removed += 1
            if info.parent:
                children[info.parent] -= 1
        return removed
