"""Registry faults seen through berthd: a connection dropped mid-blob is resumed, a blob whose
bytes do not match its digest is refused, a stalled blob ends the pull after the stall timeout —
each with a clear answer, nothing half-stored, and the next pull working."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.conftest import make_harness, start_harness, stop_harness
from tests.integration.faults.harness import FaultHarness, error_of, none
from tests.support import oci_builder as ob
from tests.support.fake_registry import FakeRegistry
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

STALL_TIMEOUT = 2.0


def app_image(name: str) -> ob.Image:
    return ob.make_image([ob.random_layer(400_000, name=name)], ob.ImageSpec(cmd=["app"]))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


@pytest.fixture(scope="module")
def fault_harness(
    tmp_path_factory: pytest.TempPathFactory,
    cni_net: CniNet,
    registry: LocalRegistry,
    fake: FakeRegistry,
) -> Iterator[FaultHarness]:
    """The conftest's harness, also trusting the fake registry, with a short stall timeout."""
    settings = {
        "insecure": [registry.host, fake.host],
        "config_path": "",
        "stall_timeout": STALL_TIMEOUT,
    }
    base = tmp_path_factory.mktemp("fr")
    harness = make_harness(base, cni_net, registry, {"registry": settings})
    start_harness(harness)
    yield harness
    stop_harness(harness)


def pull(harness: FaultHarness, ref: str) -> api_pb2.PullImageResponse:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    response: api_pb2.PullImageResponse = harness.call("PullImage", request)
    return response


def remove(harness: FaultHarness, ref: str) -> None:
    request = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref))
    harness.call("RemoveImage", request)


def test_a_connection_dropped_mid_blob_is_resumed(
    harness: FaultHarness, fake: FakeRegistry
) -> None:
    image = app_image("dropped")
    fake.add("faults/dropped", "1", image)
    layer = image.layers[0].digest
    fake.drop_after[layer] = 100_000
    response = pull(harness, f"{fake.host}/faults/dropped:1")
    assert response.image_ref == image.config_digest
    ranges = [r.headers.get("Range", "") for r in fake.blob_requests(layer)]
    assert ranges[-1] == "bytes=100000-", ranges
    remove(harness, f"{fake.host}/faults/dropped:1")
    none(harness.leaks())


def test_a_blob_with_the_wrong_bytes_is_refused_and_not_kept(
    harness: FaultHarness, fake: FakeRegistry
) -> None:
    image = ob.with_corrupt_layer(app_image("corrupt"))
    fake.add("faults/corrupt", "1", image)
    err = error_of(lambda: pull(harness, f"{fake.host}/faults/corrupt:1"))
    wrong = []
    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        wrong.append(f"PullImage answered {err.code().name}: {err.details()}")
    if image.layers[0].digest not in (err.details() or ""):
        wrong.append(f"the error does not name the bad blob: {err.details()}")
    none(wrong + harness.leaks())
    harness.probe()


def test_a_stalled_blob_ends_the_pull_and_a_retry_resumes(
    harness: FaultHarness, fake: FakeRegistry
) -> None:
    image = app_image("stalled")
    fake.add("faults/stalled", "1", image)
    layer = image.layers[0].digest
    fake.stall_after[layer] = 150_000
    started = time.monotonic()
    err = error_of(lambda: pull(harness, f"{fake.host}/faults/stalled:1"))
    elapsed = time.monotonic() - started
    wrong = []
    if err.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        wrong.append(f"PullImage answered {err.code().name}: {err.details()}")
    if layer not in (err.details() or ""):
        wrong.append(f"the error does not name the stalled layer: {err.details()}")
    if elapsed > STALL_TIMEOUT + 8:
        wrong.append(f"the stalled pull took {elapsed:.1f}s with a {STALL_TIMEOUT}s stall timeout")
    # The partial download may stay for the retry; nothing else may.
    wrong += harness.leaks(allowed_blobs=[layer])
    none(wrong)
    del fake.stall_after[layer]
    fake.released.set()  # also lets the stalled response end
    assert pull(harness, f"{fake.host}/faults/stalled:1").image_ref == image.config_digest
    assert fake.blob_requests(layer)[-1].headers.get("Range") == "bytes=150000-"
    remove(harness, f"{fake.host}/faults/stalled:1")
    none(harness.leaks())
