from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.store import ContainerRecord, SandboxRecord, Store
from cri.store.db import MIGRATIONS


def sandbox(sid: str, name: str = "p") -> SandboxRecord:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="ns", uid="u1"),
        labels={"a": "b"},
        annotations={"weird key/with:chars": "value\nwith newline"},
    )
    return SandboxRecord(
        id=sid,
        config=config,
        runtime_handler="runc",
        created_at=1,
        namespaces={"net": "/run/x/net"},
        additional_ips=("fd00::1",),
    )


def container(cid: str, sid: str, name: str = "c") -> ContainerRecord:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=name))
    return ContainerRecord(
        id=cid,
        sandbox_id=sid,
        config=config,
        image_id="sha256:aa",
        image_ref="r",
        image_name="busybox",
        created_at=2,
        runtime_handler="runc",
        groups=(1, 2),
    )


async def test_records_survive_reopen_exactly(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta.db")
    await store.open()
    await store.add_sandbox(sandbox("s1"))
    await store.add_container(container("c1", "s1"))
    updated = dataclasses.replace(
        store.container("c1"), state=api_pb2.CONTAINER_EXITED, exit_code=3
    )
    await store.update_container(updated)
    await store.close()

    again = Store(tmp_path / "meta.db")
    await again.open()
    assert again.sandbox("s1") == sandbox("s1")
    assert again.container("c1") == updated
    assert again.sandbox("s1").config.annotations["weird key/with:chars"] == "value\nwith newline"
    await again.close()


async def test_lookup_by_unique_prefix(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta.db")
    await store.open()
    await store.add_sandbox(sandbox("abc1", "one"))
    await store.add_sandbox(sandbox("abd2", "two"))
    assert store.sandbox("abc").id == "abc1"
    assert store.find_sandbox("ab") is None  # ambiguous
    with pytest.raises(errors.NotFound, match="'zz'"):
        store.sandbox("zz")
    assert store.find_sandbox("") is None
    await store.close()


async def test_name_reservation_is_enforced_by_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta.db")
    await store.open()
    await store.add_sandbox(sandbox("s1", "same"))
    with pytest.raises(errors.AlreadyExists, match="already reserved"):
        await store.add_sandbox(sandbox("s2", "same"))
    assert store.find_sandbox("s2") is None  # memory follows only committed writes
    await store.close()


async def test_remove_and_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta.db")
    await store.open()
    await store.add_sandbox(sandbox("s1"))
    await store.remove_sandbox("s1")
    assert list(store.sandboxes()) == []
    await store.close()
    conn = sqlite3.connect(tmp_path / "meta.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "meta.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this berthd"):
        await Store(tmp_path / "meta.db").open()
