"""The pieces staged pulls build on: blobs known to be verified, and committing a layer
unpacked before its parent onto that parent."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.api import Kind
from snapshotter.content import ContentStore
from snapshotter.mount import writable_dir
from snapshotter.overlay import OverlaySnapshotter

DATA = os.urandom(200_000)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


@pytest.fixture
def snaps(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(tmp_path / "snaps")
    yield s
    s.close()


def ingested(store: ContentStore) -> None:
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(DATA)
        ingest.commit()


def is_verified(store: ContentStore, digest: str = DIGEST) -> bool:
    f, verified = store.open_blob(digest)
    with f:
        assert f.read() == store.path(digest).read_bytes()
    return verified


def test_a_blob_this_store_ingested_is_known_verified(store: ContentStore) -> None:
    ingested(store)
    assert is_verified(store)


def test_another_store_instance_does_not_trust_it(store: ContentStore) -> None:
    ingested(store)
    assert not is_verified(ContentStore(store.root))  # as after a restart


def test_a_blob_changed_on_disk_is_no_longer_trusted(store: ContentStore) -> None:
    ingested(store)
    time.sleep(0.01)  # a later mtime even on coarse clocks
    with open(store.path(DIGEST), "r+b") as f:
        f.write(b"\0")
    assert not is_verified(store)


def test_a_blob_deleted_and_stored_again_otherwise_is_not_trusted(store: ContentStore) -> None:
    ingested(store)
    store.delete(DIGEST)
    store.write_blob(DATA, DIGEST)
    assert not is_verified(store)


def test_open_blob_of_a_missing_blob_is_not_found(store: ContentStore) -> None:
    with pytest.raises(errors.NotFound):
        store.open_blob(DIGEST)


def test_commit_onto_links_a_parentless_layer_to_its_parent(snaps: OverlaySnapshotter) -> None:
    snaps.prepare("extract/base", None)
    snaps.prepare("extract/upper", None)
    (writable_dir(snaps.mounts("extract/upper")) / "u").write_bytes(b"u")
    snaps.commit_onto("base", "extract/base", None)
    snaps.commit_onto("upper", "extract/upper", "base")
    info = snaps.stat("upper")
    assert (info.kind, info.parent) == (Kind.COMMITTED, "base")
    assert [d.read_bytes() for d in snaps.layer_dirs("upper")[0].iterdir()] == [b"u"]
    assert len(snaps.layer_dirs("upper")) == 2
    mounts = snaps.prepare("rootfs", "upper")
    assert mounts[0].option("lowerdir") == ":".join(str(d) for d in snaps.layer_dirs("upper"))


def test_commit_onto_refuses_a_snapshot_that_has_a_parent(snaps: OverlaySnapshotter) -> None:
    snaps.prepare("extract/base", None)
    snaps.commit("base", "extract/base")
    snaps.prepare("extract/child", "base")
    with pytest.raises(errors.FailedPrecondition, match="already has a parent"):
        snaps.commit_onto("child", "extract/child", "base")
    assert snaps.stat("extract/child").kind is Kind.ACTIVE


def test_commit_onto_an_uncommitted_or_missing_parent_changes_nothing(
    snaps: OverlaySnapshotter,
) -> None:
    snaps.prepare("extract/base", None)
    snaps.prepare("extract/upper", None)
    with pytest.raises(errors.FailedPrecondition, match="not committed"):
        snaps.commit_onto("upper", "extract/upper", "extract/base")
    with pytest.raises(errors.NotFound):
        snaps.commit_onto("upper", "extract/upper", "nope")
    assert snaps.stat("extract/upper").kind is Kind.ACTIVE
    assert snaps.stat("extract/upper").parent is None


def test_commit_onto_a_name_taken_is_already_exists(snaps: OverlaySnapshotter) -> None:
    snaps.prepare("extract/a", None)
    snaps.commit_onto("layer", "extract/a", None)
    snaps.prepare("extract/b", None)
    with pytest.raises(errors.AlreadyExists):
        snaps.commit_onto("layer", "extract/b", None)
