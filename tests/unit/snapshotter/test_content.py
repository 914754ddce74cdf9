"""The content store: verified atomic commits, resumable ingests, bounded reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.content import ContentStore


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


DATA = os.urandom(300_000)
DIGEST = digest_of(DATA)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def test_ingest_commit_moves_blob_into_place(store: ContentStore) -> None:
    with store.ingest(DIGEST, len(DATA)) as ingest:
        assert ingest.offset == 0
        ingest.write(DATA[:1000])
        ingest.write(DATA[1000:])
        assert store.ingests() == [DIGEST]
        assert not store.exists(DIGEST)  # nothing visible before the commit
        ingest.commit()
    assert store.exists(DIGEST)
    assert store.path(DIGEST).read_bytes() == DATA
    assert store.size(DIGEST) == len(DATA)
    assert store.digests() == [DIGEST]
    assert store.ingests() == []


def test_partial_ingest_is_resumed_with_its_hash(store: ContentStore) -> None:
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(DATA[:123_457])
    # as after a crash: the partial stays on disk; a new ingest continues it
    with store.ingest(DIGEST, len(DATA)) as resumed:
        assert resumed.offset == 123_457
        resumed.write(DATA[123_457:])
        resumed.commit()
    assert store.read(DIGEST, max_size=len(DATA)) == DATA


def test_partial_longer_than_blob_starts_over(store: ContentStore) -> None:
    hex_ = DIGEST.removeprefix("sha256:")
    (store.root / "ingest" / hex_).mkdir()
    (store.root / "ingest" / hex_ / "data").write_bytes(b"x" * (len(DATA) + 1))
    with store.ingest(DIGEST, len(DATA)) as ingest:
        assert ingest.offset == 0


def test_digest_mismatch_deletes_partial(store: ContentStore) -> None:
    ingest = store.ingest(DIGEST, len(DATA))
    ingest.write(bytes(len(DATA)))
    with pytest.raises(errors.InvalidArgument, match="content has digest"):
        ingest.commit()
    assert store.digests() == []
    assert store.ingests() == []


def test_short_blob_fails_commit(store: ContentStore) -> None:
    ingest = store.ingest(DIGEST, len(DATA))
    ingest.write(DATA[:10])
    with pytest.raises(errors.InvalidArgument, match="got 10 bytes"):
        ingest.commit()
    assert store.digests() == [] and store.ingests() == []


def test_writing_past_declared_size_empties_partial(store: ContentStore) -> None:
    with store.ingest(DIGEST, 10) as ingest:
        ingest.write(DATA[:8])
        with pytest.raises(errors.InvalidArgument, match="more data than its declared size 10"):
            ingest.write(DATA[8:16])
        assert ingest.offset == 0
        assert (store.root / "ingest" / DIGEST[7:] / "data").stat().st_size == 0


def test_verify_resets_so_another_source_can_be_tried(store: ContentStore) -> None:
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(bytes(len(DATA)))
        with pytest.raises(errors.InvalidArgument):
            ingest.verify()
        assert ingest.offset == 0
        ingest.write(DATA)
        ingest.verify()
        ingest.commit()
    assert store.exists(DIGEST)


def test_truncate_restarts_hash(store: ContentStore) -> None:
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(b"garbage")
        ingest.truncate()
        ingest.write(DATA)
        ingest.commit()
    assert store.exists(DIGEST)


def test_second_writer_of_same_blob_is_refused(store: ContentStore) -> None:
    with (
        store.ingest(DIGEST, len(DATA)),
        pytest.raises(errors.FailedPrecondition, match="being written"),
    ):
        store.ingest(DIGEST, len(DATA))
    store.ingest(DIGEST, len(DATA)).close()  # free again after close


def test_abort_and_abort_by_digest(store: ContentStore) -> None:
    ingest = store.ingest(DIGEST, len(DATA))
    ingest.write(DATA[:5])
    ingest.abort()
    ingest.abort()
    assert store.ingests() == []
    with store.ingest(DIGEST, len(DATA)) as again:
        again.write(DATA[:5])
    store.abort(DIGEST)
    store.abort(DIGEST)
    assert store.ingests() == []


def test_empty_blob(store: ContentStore) -> None:
    empty = digest_of(b"")
    with store.ingest(empty, 0) as ingest:
        ingest.commit()
    assert store.read(empty) == b""


def test_write_blob_verifies_and_is_idempotent(store: ContentStore) -> None:
    assert store.write_blob(b"{}") == digest_of(b"{}")
    assert store.write_blob(b"{}", digest_of(b"{}")) == digest_of(b"{}")
    with pytest.raises(errors.InvalidArgument):
        store.write_blob(b"{}", DIGEST)
    assert store.digests() == [digest_of(b"{}")]
    assert [p.name for p in (store.root / "ingest").iterdir()] == []  # no temp files left


def test_read_is_bounded_and_verified(store: ContentStore) -> None:
    store.write_blob(DATA)
    with pytest.raises(errors.InvalidArgument, match="larger than"):
        store.read(DIGEST, max_size=1000)
    store.path(DIGEST).write_bytes(b"rot" + DATA[3:])
    with pytest.raises(errors.InvalidArgument, match="corrupt"):
        store.read(DIGEST, max_size=len(DATA))


def test_missing_blobs(store: ContentStore) -> None:
    with pytest.raises(errors.NotFound):
        store.read(DIGEST)
    with pytest.raises(errors.NotFound):
        store.size(DIGEST)
    assert not store.exists(DIGEST)
    store.delete(DIGEST)  # idempotent


def test_delete(store: ContentStore) -> None:
    store.write_blob(DATA)
    store.delete(DIGEST)
    assert not store.exists(DIGEST)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "sha256:../x", "sha256:" + "A" * 64, ""])
def test_bad_digests_never_become_paths(store: ContentStore, bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        store.path(bad)
    with pytest.raises(errors.InvalidArgument):
        store.ingest(bad, 1)


def test_partial_writes_left_by_a_crash_are_removed(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write_blob(b"kept")
    stray = tmp_path / "blobs" / "sha256" / ".tmp-abc123"
    stray.write_bytes(b"half")
    assert store.remove_partial_writes() == [".tmp-abc123"]
    assert not stray.exists() and store.exists(digest)


def test_partial_writes_in_the_ingest_dir_are_removed_too(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    stray = tmp_path / "ingest" / ".tmp-xyz"
    stray.write_bytes(b"")
    assert store.remove_partial_writes() == [".tmp-xyz"]
    assert store.ingests() == []
