"""The Snapshotter contract, run against the overlay snapshotter and the in-memory fake.

Only bookkeeping and mount shapes here (no root, nothing is mounted); what the
mounts show once mounted is checked in tests/integration/snapshotter/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.api import Kind, Mount, Snapshotter
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.testing import MemorySnapshotter


@pytest.fixture(params=["overlay", "memory"])
def snap(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    if request.param == "memory":
        yield MemorySnapshotter()
        return
    real = OverlaySnapshotter(tmp_path, sync=False)
    yield real
    real.close()


def source_of(mounts: list[Mount]) -> str:
    """The directory a single-layer snapshot writes to or shows."""
    (m,) = mounts
    return m.option("upperdir") or m.source


def lowerdirs(mounts: list[Mount]) -> list[str]:
    (m,) = mounts
    value = m.option("lowerdir")
    assert value is not None
    return value.split(":")


def committed(snap: Snapshotter, name: str, parent: str | None = None) -> list[Mount]:
    mounts = snap.prepare(f"tmp-{name}", parent)
    snap.commit(name, f"tmp-{name}")
    return mounts


def test_prepare_without_parent_is_a_writable_bind(snap: Snapshotter) -> None:
    (m,) = snap.prepare("a")
    assert m.type == "bind"
    assert "rw" in m.options and "ro" not in m.options
    info = snap.stat("a")
    assert (info.key, info.kind, info.parent) == ("a", Kind.ACTIVE, None)


def test_prepare_on_a_parent_is_an_overlay_with_upper_and_work(snap: Snapshotter) -> None:
    base = source_of(committed(snap, "base"))
    (m,) = snap.prepare("c", "base")
    assert m.type == "overlay"
    assert m.option("upperdir") and m.option("workdir")
    assert lowerdirs([m]) == [base]
    assert snap.stat("c").parent == "base"


def test_lowerdirs_list_the_chain_top_first(snap: Snapshotter) -> None:
    d1 = source_of(committed(snap, "l1"))
    d2 = source_of(committed(snap, "l2", "l1"))
    d3 = source_of(committed(snap, "l3", "l2"))
    assert lowerdirs(snap.prepare("c", "l3")) == [d3, d2, d1]
    assert len({d1, d2, d3}) == 3


def test_view_of_one_layer_is_a_read_only_bind_of_it(snap: Snapshotter) -> None:
    base = source_of(committed(snap, "base"))
    (m,) = snap.view("v", "base")
    assert (m.type, m.source) == ("bind", base)
    assert "ro" in m.options
    assert snap.stat("v").kind is Kind.VIEW


def test_view_of_several_layers_is_an_overlay_without_upper(snap: Snapshotter) -> None:
    committed(snap, "l1")
    committed(snap, "l2", "l1")
    (m,) = snap.view("v", "l2")
    assert m.type == "overlay"
    assert m.option("upperdir") is None and m.option("workdir") is None
    assert len(lowerdirs([m])) == 2


def test_view_without_parent_is_read_only(snap: Snapshotter) -> None:
    (m,) = snap.view("v")
    assert m.type == "bind" and "ro" in m.options


def test_mounts_repeats_what_prepare_returned(snap: Snapshotter) -> None:
    committed(snap, "base")
    first = snap.prepare("c", "base")
    view = snap.view("v", "base")
    assert snap.mounts("c") == first
    assert snap.mounts("v") == view


def test_mounts_of_committed_or_missing(snap: Snapshotter) -> None:
    committed(snap, "base")
    with pytest.raises(errors.FailedPrecondition, match="base"):
        snap.mounts("base")
    with pytest.raises(errors.NotFound, match="nope"):
        snap.mounts("nope")


def test_commit_replaces_the_active_key_keeping_parent_and_directory(snap: Snapshotter) -> None:
    committed(snap, "base")
    upper = source_of(snap.prepare("work", "base"))
    snap.commit("done", "work", labels={"x": "1"})
    with pytest.raises(errors.NotFound):
        snap.stat("work")
    info = snap.stat("done")
    assert (info.kind, info.parent, info.labels.get("x")) == (Kind.COMMITTED, "base", "1")
    # what was written to the active snapshot is what the next layer stacks on
    assert lowerdirs(snap.prepare("next", "done"))[0] == upper


def test_commit_errors(snap: Snapshotter) -> None:
    committed(snap, "base")
    snap.prepare("a")
    snap.view("v", "base")
    with pytest.raises(errors.AlreadyExists, match="base"):
        snap.commit("base", "a")
    with pytest.raises(errors.FailedPrecondition, match="v"):
        snap.commit("x", "v")
    with pytest.raises(errors.FailedPrecondition, match="base"):
        snap.commit("x", "base")
    with pytest.raises(errors.NotFound, match="missing"):
        snap.commit("x", "missing")
    assert snap.stat("a").kind is Kind.ACTIVE  # nothing changed by the failures


def test_keys_are_one_namespace(snap: Snapshotter) -> None:
    committed(snap, "base")
    snap.prepare("a")
    for key in ("a", "base"):
        with pytest.raises(errors.AlreadyExists, match=key):
            snap.prepare(key)
        with pytest.raises(errors.AlreadyExists, match=key):
            snap.view(key)


def test_parent_must_exist_and_be_committed(snap: Snapshotter) -> None:
    snap.prepare("active")
    snap.view("view")
    with pytest.raises(errors.NotFound, match="ghost"):
        snap.prepare("x", "ghost")
    with pytest.raises(errors.FailedPrecondition, match="active"):
        snap.prepare("x", "active")
    with pytest.raises(errors.FailedPrecondition, match="view"):
        snap.view("x", "view")
    assert {i.key for i in snap.walk()} == {"active", "view"}


def test_empty_key_is_invalid(snap: Snapshotter) -> None:
    with pytest.raises(errors.InvalidArgument):
        snap.prepare("")


def test_remove_refuses_a_parent_until_children_are_gone(snap: Snapshotter) -> None:
    committed(snap, "base")
    committed(snap, "mid", "base")
    snap.prepare("c", "mid")
    with pytest.raises(errors.FailedPrecondition, match="mid"):
        snap.remove("mid")
    with pytest.raises(errors.FailedPrecondition, match="base"):
        snap.remove("base")
    snap.remove("c")
    snap.remove("mid")
    snap.remove("base")
    assert snap.walk() == []


def test_remove_missing_is_not_found(snap: Snapshotter) -> None:
    with pytest.raises(errors.NotFound, match="gone"):
        snap.remove("gone")


def test_removed_key_can_be_reused(snap: Snapshotter) -> None:
    snap.prepare("a")
    snap.remove("a")
    snap.prepare("a")
    assert snap.stat("a").kind is Kind.ACTIVE


def test_walk_lists_parents_before_children(snap: Snapshotter) -> None:
    committed(snap, "l1")
    committed(snap, "l2", "l1")
    snap.prepare("c", "l2")
    snap.view("v", "l1")
    keys = [i.key for i in snap.walk()]
    assert sorted(keys) == ["c", "l1", "l2", "v"]
    assert keys.index("l1") < keys.index("l2") < keys.index("c")


def test_stat_reports_labels_and_times(snap: Snapshotter) -> None:
    snap.prepare("a", labels={"k": "v"})
    info = snap.stat("a")
    assert info.labels == {"k": "v"}
    assert info.created_at_ns > 0 and info.updated_at_ns >= info.created_at_ns
    with pytest.raises(errors.NotFound):
        snap.stat("nope")


def test_usage_of_missing_and_committed(snap: Snapshotter) -> None:
    committed(snap, "base")
    first = snap.usage("base")
    assert first == snap.usage("base")
    assert first.inodes >= 1
    with pytest.raises(errors.NotFound):
        snap.usage("nope")
