"""The overlayfs snapshotter (contract: `snapshotter.api.Snapshotter`).

Layout under `root`::

    snapshots.db          sqlite (WAL, synchronous=FULL): key -> id, kind, parent, labels, usage
    snapshots/<id>/fs     the snapshot's own files (overlay upperdir; a lowerdir once committed)
    snapshots/<id>/work   overlayfs workdir of an active snapshot
    snapshots/new-*, rm-* directories being created or deleted

Why sqlite rather than an atomic JSON file: commit and remove must check and
change several rows together (no children, name free, parent committed), and
a JSON rewrite per call costs O(snapshots) with an fsync; sqlite gives those
transactions, and the daemon uses it already.

Crash safety. A snapshot directory is built under `new-*`, renamed to its id
(the rename made durable) and only then is its row committed; a removal
commits the row's deletion first and deletes files after. Ids are
AUTOINCREMENT and never reused once committed, so after a crash a directory
without a row is garbage: `cleanup()` deletes it, and the `new-*`/`rm-*`
leftovers. A committed snapshot's files are flushed (syncfs) before its
commit row, so a committed layer is never half on disk.

Nothing here mounts: mounts are described and `snapshotter.mount` performs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from snapshotter import errors
from snapshotter.api import Kind, Mount, SnapshotInfo, Usage
from snapshotter.fsutil import disk_usage, fsync_dir, syncfs
from snapshotter.mount import PAGE_SIZE

log = structlog.get_logger(__name__)

# overlayfs refuses more lower layers than this (OVL_MAX_STACK).
MAX_LOWERS: Final = 500
MAX_KEY_LENGTH: Final = 4096

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
    parent_id INTEGER REFERENCES snapshots(id),
    labels TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    size INTEGER,
    inodes INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
"""
_COLUMNS: Final = "id, key, kind, parent_id, labels, created_ns, updated_ns, size, inodes"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    id: int
    key: str
    kind: Kind
    parent_id: int | None
    labels: str
    created_ns: int
    updated_ns: int
    size: int | None
    inodes: int | None


def open_db(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, durable commits."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class OverlaySnapshotter:
    """Snapshots as overlayfs layers under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, sync: bool = True) -> None:
        self.root = root.absolute()  # mounts must name absolute paths
        self._dir = self.root / "snapshots"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._lock = threading.RLock()
        self._db = open_db(self.root / "snapshots.db")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- the Snapshotter contract -----------------------------------------

    def prepare(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, Kind.ACTIVE, labels)

    def view(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, Kind.VIEW, labels)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            row = self._get(key)
            if row.kind is Kind.COMMITTED:
                raise errors.FailedPrecondition(f"snapshot {key} is committed: it has no mounts")
            return self._mounts(row, self._ancestors(row.parent_id))

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        self._commit(name, key, labels, onto=None, reparent=False)

    def commit_onto(
        self, name: str, key: str, parent: str | None, *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Commit active snapshot `key`, prepared without a parent, as `name` on top of the
        committed snapshot `parent` (None: a base layer).

        For layers unpacked side by side: an extracted layer's files do not depend on the
        layers below it, so it can be unpacked before its parent exists and linked at commit.
        FailedPrecondition if `key` has a parent already or `parent` is not committed.
        """
        self._commit(name, key, labels, onto=parent, reparent=True)

    def _commit(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None,
        *,
        onto: str | None,
        reparent: bool,
    ) -> None:
        _check_key(name)
        row = self._active(key)
        if reparent and row.parent_id is not None:
            raise errors.FailedPrecondition(f"snapshot {key} already has a parent")
        size, inodes = disk_usage(self._fs(row.id))
        if self._sync:
            syncfs(self._fs(row.id))
        with self._tx() as db:
            again = self._active(key)
            if again.id != row.id:
                raise errors.FailedPrecondition(f"snapshot {key} changed during commit")
            if self._find(name) is not None:
                raise errors.AlreadyExists(f"snapshot {name} already exists")
            parent_id = row.parent_id
            if reparent:
                parent_row = self._parent(onto) if onto else None
                parent_id = parent_row.id if parent_row else None
                self._check_depth(name, self._ancestors(parent_id))
            merged = json.loads(row.labels) | dict(labels or {})
            db.execute(
                "UPDATE snapshots SET key=?, kind='committed', parent_id=?, labels=?,"
                " updated_ns=?, size=?, inodes=? WHERE id=?",
                (name, parent_id, json.dumps(merged), time.time_ns(), size, inodes, row.id),
            )
        log.debug("snapshot committed", key=key, name=name, size=size, inodes=inodes)

    def remove(self, key: str) -> None:
        with self._tx() as db:
            row = self._get(key)
            child = db.execute(
                "SELECT key FROM snapshots WHERE parent_id=? LIMIT 1", (row.id,)
            ).fetchone()
            if child is not None:
                raise errors.FailedPrecondition(
                    f"snapshot {key} has children (e.g. {child[0]}): remove them first"
                )
            db.execute("DELETE FROM snapshots WHERE id=?", (row.id,))
        self._delete_dir(self._dir / str(row.id))

    def stat(self, key: str) -> SnapshotInfo:
        with self._lock:
            return self._info(self._get(key))

    def usage(self, key: str) -> Usage:
        with self._lock:
            row = self._get(key)
        if row.size is not None and row.inodes is not None:
            return Usage(size=row.size, inodes=row.inodes)
        size, inodes = disk_usage(self._fs(row.id))
        return Usage(size=size, inodes=inodes)

    def walk(self) -> list[SnapshotInfo]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM snapshots ORDER BY id").fetchall()
            return [self._info(_row(r)) for r in rows]

    # --- overlay specifics --------------------------------------------------

    def layer_dirs(self, key: str) -> list[Path]:
        """The `fs` directories of `key` and its ancestors, top first (read-only use!)."""
        with self._lock:
            row = self._get(key)
            return [self._fs(i) for i in [row.id, *self._ancestors(row.parent_id)]]

    def cleanup(self) -> list[str]:
        """Delete directories no row owns (crash leftovers); returns their names."""
        with self._lock:
            ids = {str(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
            stray = [n for n in os.listdir(self._dir) if n not in ids]
            for name in stray:
                shutil.rmtree(self._dir / name, ignore_errors=True)
        if stray:
            log.info("snapshot leftovers removed", names=stray)
        return stray

    # --- internals ----------------------------------------------------------

    def _create(
        self, key: str, parent: str | None, kind: Kind, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        _check_key(key)
        with self._tx() as db:
            if self._find(key) is not None:
                raise errors.AlreadyExists(f"snapshot {key} already exists")
            parent_row = self._parent(parent) if parent else None
            lowers = self._ancestors(parent_row.id if parent_row else None)
            self._check_depth(key, lowers)
            now = time.time_ns()
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent_id, labels, created_ns, updated_ns)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind.value, parent_row.id if parent_row else None, _labels(labels), now, now),
            )
            assert cur.lastrowid is not None
            row = self._get(key)
            self._make_dir(row.id)
            return self._mounts(row, lowers)

    def _parent(self, parent: str) -> _Row:
        row = self._find(parent)
        if row is None:
            raise errors.NotFound(f"parent snapshot {parent} not found")
        if row.kind is not Kind.COMMITTED:
            raise errors.FailedPrecondition(f"parent snapshot {parent} is not committed")
        return row

    def _check_depth(self, key: str, lowers: list[int]) -> None:
        if len(lowers) > MAX_LOWERS:
            raise errors.InvalidArgument(
                f"snapshot {key}: {len(lowers)} layers, overlayfs allows {MAX_LOWERS}"
            )
        # mount.py shortens lowerdirs to "<id>/fs" relative to snapshots/; that must fit a page
        short = sum(len(str(i)) + 4 for i in lowers) + 2 * len(str(self._dir)) + 64
        if short >= PAGE_SIZE:
            raise errors.InvalidArgument(
                f"snapshot {key}: {len(lowers)} layers do not fit overlay's mount options"
            )

    def _make_dir(self, sid: int) -> None:
        tmp = self._dir / f"new-{secrets.token_hex(8)}"
        try:
            tmp.mkdir(mode=0o700)
            (tmp / "fs").mkdir(mode=0o755)
            (tmp / "work").mkdir(mode=0o700)
            os.chmod(tmp / "fs", 0o755)  # the root of the container's filesystem
            final = self._dir / str(sid)
            if final.exists():  # left by a crash before its row was committed
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(self._dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _delete_dir(self, path: Path) -> None:
        doomed = self._dir / f"rm-{secrets.token_hex(8)}"
        try:
            os.rename(path, doomed)
            shutil.rmtree(doomed)
        except OSError as exc:  # cleanup() finishes it later
            log.warning("snapshot directory not removed", path=str(path), error=str(exc))

    def _mounts(self, row: _Row, lowers: list[int]) -> list[Mount]:
        if not lowers:
            mode = "ro" if row.kind is Kind.VIEW else "rw"
            return [Mount(type="bind", source=str(self._fs(row.id)), options=(mode, "rbind"))]
        lowerdir = "lowerdir=" + ":".join(str(self._fs(i)) for i in lowers)
        if row.kind is Kind.VIEW:
            if len(lowers) == 1:
                source = str(self._fs(lowers[0]))
                return [Mount(type="bind", source=source, options=("ro", "rbind"))]
            return [Mount(type="overlay", source="overlay", options=(lowerdir,))]
        options = (
            "index=off",
            f"workdir={self._dir / str(row.id) / 'work'}",
            f"upperdir={self._fs(row.id)}",
            lowerdir,
        )
        return [Mount(type="overlay", source="overlay", options=options)]

    def _fs(self, sid: int) -> Path:
        return self._dir / str(sid) / "fs"

    def _ancestors(self, parent_id: int | None) -> list[int]:
        """Ids from `parent_id` up to the base layer."""
        out: list[int] = []
        while parent_id is not None:
            out.append(parent_id)
            r = self._db.execute("SELECT parent_id FROM snapshots WHERE id=?", (parent_id,))
            parent_id = r.fetchone()[0]
        return out

    def _active(self, key: str) -> _Row:
        with self._lock:
            row = self._get(key)
        if row.kind is not Kind.ACTIVE:
            raise errors.FailedPrecondition(f"snapshot {key} is {row.kind.value}, not active")
        return row

    def _find(self, key: str) -> _Row | None:
        r = self._db.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE key=?", (key,)).fetchone()
        return None if r is None else _row(r)

    def _get(self, key: str) -> _Row:
        row = self._find(key)
        if row is None:
            raise errors.NotFound(f"snapshot {key} not found")
        return row

    def _info(self, row: _Row) -> SnapshotInfo:
        parent = None
        if row.parent_id is not None:
            r = self._db.execute("SELECT key FROM snapshots WHERE id=?", (row.parent_id,))
            parent = r.fetchone()[0]
        return SnapshotInfo(
            key=row.key,
            kind=row.kind,
            parent=parent,
            labels=json.loads(row.labels),
            created_at_ns=row.created_ns,
            updated_at_ns=row.updated_ns,
        )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (durably) when the block succeeds."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _row(r: tuple[object, ...]) -> _Row:
    sid, key, kind, parent_id, labels, created, updated, size, inodes = r
    assert isinstance(sid, int) and isinstance(key, str) and isinstance(kind, str)
    assert isinstance(labels, str) and isinstance(created, int) and isinstance(updated, int)
    assert parent_id is None or isinstance(parent_id, int)
    assert size is None or isinstance(size, int)
    assert inodes is None or isinstance(inodes, int)
    return _Row(
        id=sid,
        key=key,
        kind=Kind(kind),
        parent_id=parent_id,
        labels=labels,
        created_ns=created,
        updated_ns=updated,
        size=size,
        inodes=inodes,
    )


def _labels(labels: Mapping[str, str] | None) -> str:
    return json.dumps(dict(labels or {}), sort_keys=True)


def _check_key(key: str) -> None:
    if not key or "\0" in key or len(key) > MAX_KEY_LENGTH:
        raise errors.InvalidArgument(f"invalid snapshot key {key[:100]!r}")
