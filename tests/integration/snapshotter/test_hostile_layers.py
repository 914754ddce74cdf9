"""Hostile images pulled through the real Puller from a scriptable registry.

Each must fail with a clear error naming what was wrong, and leave the store
exactly as it was: same files under snapshots/ and content/, same snapshot and
image rows, nothing written outside the root (a canary beside it, and the
host paths the tars aim at).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.images import ImageStore
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.puller import Puller
from snapshotter.registry.hosts import RegistryHosts
from snapshotter.unpack import UnpackLimits
from tests.support import oci_builder as ob

if TYPE_CHECKING:
    from tests.support.fake_registry import FakeRegistry

pytestmark = pytest.mark.root

ESCAPES = [Path("/escape"), Path("/tmp/escape"), Path("/etc/berth-escape")]
LIMIT = 16 << 20


@dataclass
class Stack:
    root: Path
    canary: Path
    store: ImageStore
    snaps: OverlaySnapshotter
    registry: FakeRegistry

    def state(self) -> dict[str, Any]:
        """Everything a failed pull must not change."""
        files = {}
        for base in ("snapshots", "content"):
            for dirpath, dirnames, filenames in os.walk(self.root / base):
                for name in dirnames + filenames:
                    p = Path(dirpath, name)
                    files[str(p.relative_to(self.root))] = p.lstat().st_size if p.is_file() else -1
        outside = sorted(
            str(p) for p in self.canary.parent.rglob("*") if self.root not in p.parents
        )
        return {
            "files": files,
            "snapshots": self.snaps.walk(),
            "images": self.store.list(),
            "outside": outside,
            "canary": (self.canary / "file").read_bytes(),
            "escapes": [p.exists() for p in ESCAPES],
        }


@pytest.fixture
async def stack(tmp_path: Path, fake_registry: FakeRegistry) -> AsyncIterator[Stack]:
    root = tmp_path / "root"
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_bytes(b"untouched")
    content = ContentStore(root / "content")
    snaps = OverlaySnapshotter(root)
    hosts = RegistryHosts(config_path=None, insecure=[fake_registry.host])
    puller = Puller(content, hosts, retries=0)
    store = ImageStore(
        root / "images",
        puller=puller,
        content=content,
        snapshotter=snaps,
        limits=UnpackLimits(max_bytes=LIMIT),
    )
    fake_registry.add("library/busybox", "latest", ob.busybox_image())
    await store.pull(f"{fake_registry.host}/library/busybox:latest")  # shares the base layer
    yield Stack(root=root, canary=canary, store=store, snaps=snaps, registry=fake_registry)
    await puller.aclose()
    store.close()
    snaps.close()


def on_busybox(*entries: ob.Entry) -> ob.Image:
    return ob.make_image([ob.busybox_rootfs_layer(), ob.layer(list(entries))])


def wrong_diff_id() -> ob.Image:
    lay = ob.layer([ob.file("x", b"x")])
    config = ob.config_json([lay], ob.ImageSpec())
    config["rootfs"]["diff_ids"] = ["sha256:" + "a" * 64]
    return ob.make_image([lay], config=config)


def bomb() -> ob.Image:
    return ob.make_image([ob.layer([ob.file("zeros", bytes(4 * LIMIT))])])


HOSTILE: dict[str, tuple[Callable[[], ob.Image], type[errors.Error], str]] = {
    "dotdot": (lambda: on_busybox(*ob.hostile_entries()["dotdot"]), errors.InvalidArgument, "'..'"),
    "nested_dotdot": (
        lambda: on_busybox(*ob.hostile_entries()["nested_dotdot"]),
        errors.InvalidArgument,
        "'..'",
    ),
    "absolute": (
        lambda: on_busybox(*ob.hostile_entries()["absolute"]),
        errors.InvalidArgument,
        "absolute",
    ),
    "symlink_escape": (
        lambda: on_busybox(*ob.hostile_entries()["symlink_escape"]),
        errors.InvalidArgument,
        "'link' is a symlink",
    ),
    "symlink_relative_escape": (
        lambda: on_busybox(*ob.hostile_entries()["symlink_relative_escape"]),
        errors.InvalidArgument,
        "'up' is a symlink",
    ),
    "symlink_into_etc": (
        lambda: on_busybox(ob.symlink("e", "/etc"), ob.file("e/berth-escape", b"x")),
        errors.InvalidArgument,
        "'e' is a symlink",
    ),
    "hardlink_outside": (
        lambda: on_busybox(*ob.hostile_entries()["hardlink_outside"]),
        errors.InvalidArgument,
        "hardlink target '/etc/passwd'",
    ),
    "hardlink_dotdot": (
        lambda: on_busybox(*ob.hostile_entries()["hardlink_dotdot"]),
        errors.InvalidArgument,
        "hardlink target",
    ),
    "hardlink_to_lower_layer": (
        lambda: on_busybox(ob.hardlink("mysh", "bin/busybox")),
        errors.InvalidArgument,
        "has not extracted",
    ),
    "corrupt_blob": (
        lambda: ob.with_corrupt_layer(on_busybox(ob.file("x", b"x")), 1),
        errors.InvalidArgument,
        "digest",
    ),
    "declared_size_mismatch": (
        lambda: ob.with_declared_size(on_busybox(ob.file("x", b"x" * 1000)), 1, 10),
        errors.InvalidArgument,
        "declared size 10",
    ),
    "diff_id_mismatch": (wrong_diff_id, errors.InvalidArgument, "diff_id"),
    "decompression_bomb": (bomb, errors.InvalidArgument, f"more than {LIMIT}|larger than {LIMIT}"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_image_is_refused_without_a_trace(stack: Stack, case: str) -> None:
    escapes_before = [p.exists() for p in ESCAPES]
    build, kind, message = HOSTILE[case]
    image = build()
    stack.registry.add("evil/image", case, image)
    before = stack.state()
    with pytest.raises(kind, match=message) as exc:
        await stack.store.pull(f"{stack.registry.host}/evil/image:{case}")
    text = str(exc.value)
    assert "sha256:" in text or "evil/image" in text, text  # names the layer or the image
    assert stack.state() == before
    assert [p.exists() for p in ESCAPES] == escapes_before
    # the store still works
    busybox = stack.store.get(f"{stack.registry.host}/library/busybox:latest")
    assert stack.store.read_image_file(busybox.id, "/etc/passwd") == ob.PASSWD
