"""Build (or load from the cache) every image critest pulls: the one entry point for callers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from e2e.images import cache, catalog

DEFAULT_CACHE: Final = Path("/var/cache/berth-critest")


def critest_images(cache_dir: Path = DEFAULT_CACHE) -> list[catalog.Published]:
    """The catalog, built from Debian packages on first use and served from `cache_dir` after."""
    inputs = catalog.gather_inputs(cache_dir)
    layout = cache_dir / "images" / cache.cache_key(inputs)
    if not (layout / "index.json").exists():
        cache.save(catalog.build_catalog(inputs), layout)
        _prune(layout)
    return cache.load(layout)


def _prune(keep: Path) -> None:
    """Drop catalogs of older inputs: only the current one is ever loaded."""
    for old in keep.parent.iterdir():
        if old != keep and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
