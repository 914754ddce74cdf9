"""Transfer faults over real sockets, served by the scriptable FakeRegistry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from snapshotter import descriptors as d
from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.puller import Puller
from snapshotter.reference import parse
from snapshotter.registry.hosts import RegistryHosts
from tests.support import oci_builder as ob
from tests.support.fake_registry import FakeRegistry

LAYERS = (ob.random_layer(2_000_000, name="a"), ob.random_layer(1_500_000, name="b"))
IMAGE = ob.make_image(LAYERS, ob.ImageSpec(cmd=["one"]))


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


@pytest.fixture
def fake(fake_registry: FakeRegistry) -> FakeRegistry:
    fake_registry.add("app", "1", IMAGE)
    return fake_registry


def make_puller(store: ContentStore, fake: FakeRegistry, **kwargs: object) -> Puller:
    hosts = RegistryHosts(config_path=None, insecure=[fake.host])
    return Puller(store, hosts, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def puller(store: ContentStore, fake: FakeRegistry) -> AsyncIterator[Puller]:
    p = make_puller(store, fake)
    yield p
    await p.aclose()


async def test_concurrent_pulls_of_one_reference_share_one_download(
    fake: FakeRegistry, puller: Puller, store: ContentStore
) -> None:
    ref = parse(f"{fake.host}/app:1")
    results = await asyncio.gather(*(puller.pull(ref) for _ in range(4)))
    assert len({r.manifest_digest for r in results}) == 1
    assert len(fake.manifest_requests()) == 1
    for lay in LAYERS:
        assert len(fake.blob_requests(lay.digest)) == 1
        assert store.path(lay.digest).read_bytes() == lay.data


async def test_pulls_of_two_references_share_a_blob_download(
    fake: FakeRegistry, puller: Puller
) -> None:
    other = ob.make_image(LAYERS, ob.ImageSpec(cmd=["two"]))  # same layers, another config
    fake.add("app", "2", other)
    held = LAYERS[0].digest
    fake.hold[held] = gate = threading.Event()
    first = asyncio.create_task(puller.pull(parse(f"{fake.host}/app:1")))
    second = asyncio.create_task(puller.pull(parse(f"{fake.host}/app:2")))
    deadline = time.monotonic() + 10
    while puller.downloads_in_flight().get(held, 0) < 2:  # both pulls wait for the one download
        assert time.monotonic() < deadline, puller.downloads_in_flight()
        await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, second)
    assert len(fake.blob_requests(held)) == 1
    assert len(fake.blob_requests(LAYERS[1].digest)) == 1


async def test_dropped_connection_resumes_with_range(
    fake: FakeRegistry, puller: Puller, store: ContentStore
) -> None:
    lay = LAYERS[0]
    fake.drop_after[lay.digest] = 700_000
    await puller.pull(parse(f"{fake.host}/app:1"))
    ranges = [r.headers.get("Range") for r in fake.blob_requests(lay.digest)]
    assert ranges[0] is None
    assert len(ranges) == 2 and ranges[1] is not None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 700_000  # what arrived before the drop was kept
    assert store.path(lay.digest).read_bytes() == lay.data


async def test_server_without_ranges_restarts_the_blob(
    store: ContentStore, fake_registry: FakeRegistry
) -> None:
    fake_registry.ranges = False
    fake_registry.add("app", "1", IMAGE)
    fake_registry.drop_after[LAYERS[1].digest] = 500_000
    p = make_puller(store, fake_registry)
    await p.pull(parse(f"{fake_registry.host}/app:1"))
    await p.aclose()
    assert len(fake_registry.blob_requests(LAYERS[1].digest)) == 2
    assert store.path(LAYERS[1].digest).read_bytes() == LAYERS[1].data


async def test_stalled_layer_cancels_the_pull(fake: FakeRegistry, store: ContentStore) -> None:
    stalled = LAYERS[1].digest
    fake.stall_after[stalled] = 100_000
    p = make_puller(store, fake, stall_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match=stalled):
        await p.pull(parse(f"{fake.host}/app:1"))
    assert time.monotonic() - started < 5
    await p.aclose()
    assert not store.exists(stalled)
    assert len(fake.blob_requests(stalled)) == 1


async def test_503_is_retried(fake: FakeRegistry, store: ContentStore) -> None:
    fake.statuses[f"/v2/app/blobs/{LAYERS[0].digest}"] = [503, 503]
    p = make_puller(store, fake)
    await p.pull(parse(f"{fake.host}/app:1"))
    await p.aclose()
    assert len(fake.blob_requests(LAYERS[0].digest)) == 3


async def test_manifest_served_as_an_index_is_rejected(fake: FakeRegistry, puller: Puller) -> None:
    fake.add("app", "mistyped", ob.with_media_type(IMAGE, d.OCI_INDEX))
    with pytest.raises(errors.InvalidArgument, match="but says it is"):
        await puller.pull(parse(f"{fake.host}/app:mistyped"))


async def test_blob_with_wrong_digest_leaves_nothing(
    fake_registry: FakeRegistry, store: ContentStore
) -> None:
    fake_registry.add("app", "bad", ob.with_corrupt_layer(IMAGE, 0))
    p = make_puller(store, fake_registry)
    with pytest.raises(errors.InvalidArgument, match="content has digest"):
        await p.pull(parse(f"{fake_registry.host}/app:bad"))
    await p.aclose()
    assert not store.exists(LAYERS[0].digest)
    assert LAYERS[0].digest not in store.ingests()
