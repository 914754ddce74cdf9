"""The sqlite database under the root dir: opened once, WAL, versioned schema.

All access goes through one worker thread (sqlite connections are not shared across threads),
so callers ``await`` writes; a write returns only after its transaction is committed with
``synchronous=FULL``, i.e. durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cri import metrics

T = TypeVar("T")

# Each entry migrates the schema from version i to i+1. Append only; never edit a landed one.
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, name_key TEXT NOT NULL UNIQUE,"
        " data TEXT NOT NULL)",
        "CREATE TABLE containers (id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL,"
        " name_key TEXT NOT NULL UNIQUE, data TEXT NOT NULL)",
        "CREATE INDEX containers_by_sandbox ON containers (sandbox_id)",
    ),
)


class Database:
    """One sqlite connection owned by one thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-store")
        self._conn: sqlite3.Connection | None = None

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def open(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(lambda: self._connection().execute(sql, args).fetchall())

    async def write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run the statements in one transaction; returns once it is durable."""
        started = time.perf_counter()
        await self._run(lambda: self._transaction(statements))
        metrics.STORE_WRITE_DURATION.observe(time.perf_counter() - started)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        conn = self._connection()
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.isolation_level = "DEFERRED"
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self._path} has schema version {version}, newer than this berthd "
                f"({len(MIGRATIONS)}); refusing to touch it"
            )
        for index in range(version, len(MIGRATIONS)):
            with conn:
                for sql in MIGRATIONS[index]:
                    conn.execute(sql)
                conn.execute(f"PRAGMA user_version = {index + 1}")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
