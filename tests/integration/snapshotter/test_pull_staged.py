"""Staged pulls: layers unpack while later ones download, side by side, committed in order.

A real Puller over the scriptable FakeRegistry (blobs can be held back), a real
ContentStore and OverlaySnapshotter under an ImageStore.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.api import Kind
from snapshotter.content import ContentStore
from snapshotter.images import ImageStore, chain_ids
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.puller import Puller
from snapshotter.registry.hosts import RegistryHosts
from tests.support import oci_builder as ob
from tests.support.fake_registry import FakeRegistry

BASE = ob.layer([ob.directory("etc"), ob.file("etc/motd", b"base"), ob.file("etc/gone", b"x")])
MIDDLE = ob.layer([ob.file("etc/motd", b"middle"), ob.whiteout("etc/gone"), ob.file("m", b"m")])
TOP = ob.layer([ob.file("etc/motd", b"top"), ob.file("t", b"t")])
IMAGE = ob.make_image([BASE, MIDDLE, TOP])
CHAINS = chain_ids(tuple(lay.diff_id for lay in IMAGE.layers))


@dataclass
class Stack:
    content: ContentStore
    snaps: OverlaySnapshotter
    store: ImageStore
    fake: FakeRegistry

    def ref(self, repo: str = "app", tag: str = "1") -> str:
        return f"{self.fake.host}/{repo}:{tag}"

    def committed(self) -> set[str]:
        return {i.key for i in self.snaps.walk() if i.kind is Kind.COMMITTED}

    def extracting(self) -> list[str]:
        return [i.key for i in self.snaps.walk() if i.key.startswith("extract/")]


@pytest.fixture
async def stack(tmp_path: Path, fake_registry: FakeRegistry) -> AsyncIterator[Stack]:
    root = tmp_path / "root"
    content = ContentStore(root / "content")
    snaps = OverlaySnapshotter(root)
    hosts = RegistryHosts(config_path=None, insecure=[fake_registry.host])
    puller = Puller(content, hosts, retries=0)
    store = ImageStore(root / "images", puller=puller, content=content, snapshotter=snaps)
    fake_registry.add("app", "1", IMAGE)
    yield Stack(content=content, snaps=snaps, store=store, fake=fake_registry)
    fake_registry.released.set()
    for gate in fake_registry.hold.values():
        gate.set()
    await puller.aclose()
    store.close()
    snaps.close()


async def until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15.0
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


def held(fake: FakeRegistry, lay: ob.Layer) -> threading.Event:
    fake.hold[lay.digest] = gate = threading.Event()
    return gate


def assert_image_files(stack: Stack, image_id: str) -> None:
    read = stack.store.read_image_file
    assert read(image_id, "/etc/motd") == b"top"
    assert read(image_id, "/etc/gone") is None  # whited out by the middle layer
    assert read(image_id, "/m") == b"m"
    assert read(image_id, "/t") == b"t"


async def test_lower_layers_are_committed_while_the_top_one_downloads(stack: Stack) -> None:
    gate = held(stack.fake, TOP)
    pull = asyncio.create_task(stack.store.pull(stack.ref()))
    await until("the two lower layers are committed", lambda: stack.committed() == set(CHAINS[:2]))
    assert not pull.done()
    gate.set()
    image = await pull
    assert stack.committed() == set(CHAINS)
    assert stack.extracting() == []
    assert_image_files(stack, image.id)


async def test_layers_that_arrive_first_wait_for_their_parent_to_commit(stack: Stack) -> None:
    gate = held(stack.fake, BASE)
    pull = asyncio.create_task(stack.store.pull(stack.ref()))

    def upper_layers_extracted() -> bool:
        keys = stack.extracting()
        done = [k for k in keys if (stack.snaps.layer_dirs(k)[0] / "etc/motd").exists()]
        return len(done) == 2

    await until("the upper layers are extracted", upper_layers_extracted)
    assert stack.committed() == set()  # nothing is committed before the base layer
    gate.set()
    image = await pull
    assert stack.committed() == set(CHAINS)
    assert [stack.snaps.stat(c).parent for c in CHAINS] == [None, CHAINS[0], CHAINS[1]]
    # parents keep lower ids than their children (sweeps free children first by id)
    dirs = [stack.snaps.layer_dirs(c)[0].parent.name for c in CHAINS]
    assert [int(d) for d in dirs] == sorted(int(d) for d in dirs)
    assert_image_files(stack, image.id)


async def test_a_hostile_layer_fails_the_pull_without_waiting_for_other_downloads(
    stack: Stack,
) -> None:
    evil = ob.layer(ob.hostile_entries()["dotdot"])
    big = ob.random_layer(1_000_000, name="big")
    stack.fake.add("evil", "1", ob.make_image([evil, big]))
    held(stack.fake, big)  # never released during the pull
    with pytest.raises(errors.InvalidArgument, match=re.escape("'..'")):
        await asyncio.wait_for(stack.store.pull(stack.ref("evil")), timeout=20)
    assert stack.snaps.walk() == []
    assert stack.content.digests() == []


async def test_a_corrupt_upper_blob_fails_the_pull_and_frees_the_layers_below(
    stack: Stack,
) -> None:
    bad = ob.with_corrupt_layer(ob.make_image([BASE, MIDDLE, ob.layer([ob.file("c", b"c")])]), 2)
    stack.fake.add("bad", "1", bad)
    with pytest.raises(errors.InvalidArgument, match=bad.layers[2].digest):
        await stack.store.pull(stack.ref("bad"))
    assert stack.snaps.walk() == []
    assert stack.store.list() == []
    image = await stack.store.pull(stack.ref())  # the same lower layers pull again
    assert_image_files(stack, image.id)


async def test_concurrent_pulls_sharing_layers_unpack_each_layer_once(stack: Stack) -> None:
    other = ob.make_image([BASE, MIDDLE, ob.layer([ob.file("o", b"o")])])
    stack.fake.add("other", "1", other)
    gate = held(stack.fake, BASE)
    pulls = [
        asyncio.create_task(stack.store.pull(stack.ref())),
        asyncio.create_task(stack.store.pull(stack.ref("other"))),
    ]
    await asyncio.sleep(0.2)
    gate.set()
    a, b = await asyncio.gather(*pulls)
    assert len(stack.committed()) == 4  # base, middle, and the two tops
    assert stack.extracting() == []
    assert_image_files(stack, a.id)
    assert stack.store.read_image_file(b.id, "/o") == b"o"
    assert stack.store.read_image_file(b.id, "/etc/motd") == b"middle"


async def test_a_cancelled_pull_leaves_no_unfinished_unpack(stack: Stack) -> None:
    held(stack.fake, TOP)
    pull = asyncio.create_task(stack.store.pull(stack.ref()))
    await until("the two lower layers are committed", lambda: stack.committed() == set(CHAINS[:2]))
    pull.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pull
    assert stack.extracting() == []
    assert stack.committed() == set()  # the failed pull's sweep freed them
