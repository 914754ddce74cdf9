from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri.stats.disk import WritableLayers, tree_usage
from snapshotter import errors as snapshot_errors


def test_tree_usage_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 10000)
    os.link(tmp_path / "d" / "f", tmp_path / "link")
    os.symlink("d/f", tmp_path / "sym")
    size, inodes = tree_usage(tmp_path)
    assert inodes == 4  # root, d, f (twice linked), sym
    blocks = sum(
        os.lstat(p).st_blocks
        for p in (tmp_path, tmp_path / "d", tmp_path / "d/f", tmp_path / "sym")
    )
    assert size == blocks * 512


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now


def test_small_layers_are_measured_afresh(tmp_path: Path) -> None:
    clock = Clock()
    layers = WritableLayers(lambda cid: tmp_path, clock=clock, budget=0.01)
    first = layers.usage("c1")
    assert first is not None and first.inodes_used == 1 and first.measured_at == clock.now
    (tmp_path / "new").write_text("data")
    clock.now += 1_000_000_000  # far beyond 100x a tiny walk
    second = layers.usage("c1")
    assert second is not None and second.inodes_used == 2 and second.measured_at == clock.now


def test_results_are_reused_within_the_budget(tmp_path: Path) -> None:
    clock = Clock()
    layers = WritableLayers(lambda cid: tmp_path, clock=clock, budget=1e-9)  # any walk: max age
    first = layers.usage("c1")
    (tmp_path / "new").write_text("data")
    clock.now += 1_000_000  # 1 ms later: still cached
    assert layers.usage("c1") == first
    clock.now += 31 * 1_000_000_000  # beyond max_age
    again = layers.usage("c1")
    assert again is not None and again.inodes_used == 2


def test_no_rootfs_means_no_layer(tmp_path: Path) -> None:
    def missing(cid: str) -> Path:
        raise snapshot_errors.NotFound(f"rootfs {cid} not found")

    layers = WritableLayers(missing)
    assert layers.usage("c1") is None
    assert layers.upper_dir("c1") is None


def test_vanished_dir_means_no_layer(tmp_path: Path) -> None:
    layers = WritableLayers(lambda cid: tmp_path / "gone")
    assert layers.usage("c1") is None


@pytest.mark.parametrize("keep", [set(), {"c1"}])
def test_forget(tmp_path: Path, keep: set[str]) -> None:
    calls: list[str] = []

    def upper(cid: str) -> Path:
        calls.append(cid)
        return tmp_path

    layers = WritableLayers(upper)
    layers.usage("c1")
    layers.forget(keep)
    layers.usage("c1")
    assert len(calls) == (1 if keep else 2)
