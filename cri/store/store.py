"""The metadata store: sandboxes and containers, in memory for reads, in sqlite for durability.

Reads (lists, status) never touch the disk: the kubelet relists every second. Every change
is written through in one transaction before the call returns, and the in-memory view is
updated only after the commit, so what a reader sees is always durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from cri import errors
from cri.store.db import Database
from cri.store.records import ContainerRecord, SandboxRecord, decode, encode

R = TypeVar("R")


def _lookup(records: Mapping[str, R], key: str) -> R | None:
    """Exact id, else the one record whose id starts with ``key`` (ambiguous = not found)."""
    if not key:
        return None
    if key in records:
        return records[key]
    matches = [r for rid, r in records.items() if rid.startswith(key)]
    return matches[0] if len(matches) == 1 else None


class Store:
    def __init__(self, path: Path) -> None:
        self._db = Database(path)
        self._sandboxes: dict[str, SandboxRecord] = {}
        self._containers: dict[str, ContainerRecord] = {}

    async def open(self) -> None:
        await self._db.open()
        for (text,) in await self._db.read("SELECT data FROM sandboxes"):
            sandbox = decode(SandboxRecord, text)
            self._sandboxes[sandbox.id] = sandbox
        for (text,) in await self._db.read("SELECT data FROM containers"):
            container = decode(ContainerRecord, text)
            self._containers[container.id] = container

    async def close(self) -> None:
        await self._db.close()

    # -- sandboxes -------------------------------------------------------------------------

    def sandboxes(self) -> Iterable[SandboxRecord]:
        return self._sandboxes.values()

    def sandbox(self, sandbox_id: str) -> SandboxRecord:
        """By full id or unique prefix; NotFound otherwise."""
        found = self.find_sandbox(sandbox_id)
        if found is None:
            raise errors.NotFound(f"pod sandbox {sandbox_id!r} not found")
        return found

    def find_sandbox(self, sandbox_id: str) -> SandboxRecord | None:
        return _lookup(self._sandboxes, sandbox_id)

    def sandbox_by_name(self, name_key: str) -> SandboxRecord | None:
        return next((s for s in self._sandboxes.values() if s.name_key == name_key), None)

    async def add_sandbox(self, sandbox: SandboxRecord) -> None:
        """AlreadyExists when the name is taken (a concurrent create won the race)."""
        await self._insert(
            f"pod sandbox name {sandbox.name_key!r}",
            "INSERT INTO sandboxes (id, name_key, data) VALUES (?, ?, ?)",
            (sandbox.id, sandbox.name_key, encode(sandbox)),
        )
        self._sandboxes[sandbox.id] = sandbox

    async def update_sandbox(self, sandbox: SandboxRecord) -> None:
        await self._db.write(
            [("UPDATE sandboxes SET data = ? WHERE id = ?", (encode(sandbox), sandbox.id))]
        )
        self._sandboxes[sandbox.id] = sandbox

    async def remove_sandbox(self, sandbox_id: str) -> None:
        await self._db.write([("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))])
        self._sandboxes.pop(sandbox_id, None)

    # -- containers ------------------------------------------------------------------------

    def containers(self, sandbox_id: str | None = None) -> list[ContainerRecord]:
        return [
            c for c in self._containers.values() if sandbox_id is None or c.sandbox_id == sandbox_id
        ]

    def container(self, container_id: str) -> ContainerRecord:
        """By full id or unique prefix; NotFound otherwise."""
        found = self.find_container(container_id)
        if found is None:
            raise errors.NotFound(f"container {container_id!r} not found")
        return found

    def find_container(self, container_id: str) -> ContainerRecord | None:
        return _lookup(self._containers, container_id)

    def container_by_name(self, name_key: str) -> ContainerRecord | None:
        return next((c for c in self._containers.values() if c.name_key == name_key), None)

    async def add_container(self, container: ContainerRecord) -> None:
        """AlreadyExists when the name is taken in its sandbox."""
        await self._insert(
            f"container name {container.name_key!r}",
            "INSERT INTO containers (id, sandbox_id, name_key, data) VALUES (?, ?, ?, ?)",
            (container.id, container.sandbox_id, container.name_key, encode(container)),
        )
        self._containers[container.id] = container

    async def _insert(self, what: str, sql: str, args: tuple[str, ...]) -> None:
        try:
            await self._db.write([(sql, args)])
        except sqlite3.IntegrityError:
            raise errors.AlreadyExists(f"{what} is already reserved") from None

    async def update_container(self, container: ContainerRecord) -> None:
        await self._db.write(
            [("UPDATE containers SET data = ? WHERE id = ?", (encode(container), container.id))]
        )
        self._containers[container.id] = container

    async def remove_container(self, container_id: str) -> None:
        await self._db.write([("DELETE FROM containers WHERE id = ?", (container_id,))])
        self._containers.pop(container_id, None)
