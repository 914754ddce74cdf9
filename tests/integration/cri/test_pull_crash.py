"""berthd killed in the middle of a pull: the next pull resumes, nothing is fetched twice,
and removing the image leaves no orphan blob or snapshot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.support.berthd import Berthd
from tests.support.fake_registry import FakeRegistry
from tests.support.oci_builder import busybox_rootfs_layer, make_image, random_layer

pytestmark = [pytest.mark.root]


def test_sigkill_mid_pull_then_pull_again_fetches_nothing_twice(
    fake_registry: FakeRegistry, berthd_dir: Path
) -> None:
    done_a, done_b, slow = random_layer(300_000), random_layer(200_000), random_layer(12_000_000)
    base = busybox_rootfs_layer()
    image = make_image([base, done_a, done_b, slow])
    fake_registry.add("library/big", "v1", image)
    fake_registry.stall_after[slow.digest] = 9_000_000  # the last layer stops mid-way
    daemon = Berthd(berthd_dir, {"registry": {"insecure": [fake_registry.host], "config_path": ""}})
    daemon.start()
    ref = f"{fake_registry.host}/library/big:v1"
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))

    errors: list[grpc.RpcError] = []

    def pull() -> None:
        try:
            daemon.client.images.PullImage(request, timeout=60)
        except grpc.RpcError as exc:  # the daemon dies under it
            errors.append(exc)

    puller = threading.Thread(target=pull)
    puller.start()
    content = daemon.root / "content" / "blobs" / "sha256"
    deadline = time.monotonic() + 30
    # Every layer but the stalled one whole, so that it is the only partial download left.
    finished = {base.digest, done_a.digest, done_b.digest}
    while time.monotonic() < deadline:
        have = {f"sha256:{p.name}" for p in content.iterdir()} if content.exists() else set()
        partial = list((daemon.root / "content" / "ingest").glob("*/data"))
        if finished <= have and any(p.stat().st_size >= 4_000_000 for p in partial):
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"pull did not reach the stall: {errors}\n{daemon.logs()}")
    daemon.kill()
    puller.join(30)
    (partial_data,) = (daemon.root / "content" / "ingest").glob("*/data")
    kept = partial_data.stat().st_size
    fake_registry.stall_after.clear()
    fake_registry.released.set()

    daemon.start()
    try:
        daemon.client.images.PullImage(request, timeout=60)
        for layer in (done_a, done_b):
            assert len(fake_registry.blob_requests(layer.digest)) == 1  # never fetched again
        resumed = fake_registry.blob_requests(slow.digest)[-1]
        assert resumed.headers.get("Range") == f"bytes={kept}-"  # the partial was continued
        spec = api_pb2.ImageSpec(image=ref)
        daemon.client.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec))
        assert list(content.iterdir()) == []
        assert list((daemon.root / "content" / "ingest").iterdir()) == []
        assert [p.name for p in (daemon.root / "snapshots").iterdir()] == []
    finally:
        assert daemon.stop() == 0
