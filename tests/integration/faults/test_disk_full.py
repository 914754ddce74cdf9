"""A full disk: berthd's root dir fills up while a layer is unpacked, a pod's log dir fills up
while a container writes. The pull fails clearly and leaves nothing; the container is never
blocked and its log never holds half a record; everything else keeps working."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.conftest import make_harness, start_harness, stop_harness
from tests.integration.faults.harness import FaultHarness, error_of, none
from tests.support import oci_builder as ob
from tests.support.failpoint_disk import fill, free_bytes, small_tmpfs, unfill
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

ROOT_SIZE = 24 << 20
LOG_SIZE = 256 << 10
LINES = 2000  # of ~70 bytes: more than the log dir has room for
# 48 MiB of zeros: a ~50 KiB blob that cannot be unpacked into ROOT_SIZE.
ZEROS = ob.make_image([ob.layer([ob.file("zeros", bytes(48 << 20))])], ob.ImageSpec(cmd=["sh"]))
RECORD = re.compile(rb"^\S+ (stdout|stderr) [PF] .*$")


@pytest.fixture(scope="module")
def disk_harness(
    tmp_path_factory: pytest.TempPathFactory, cni_net: CniNet, registry: LocalRegistry
) -> Iterator[FaultHarness]:
    harness = make_harness(tmp_path_factory.mktemp("fd"), cni_net, registry)
    with small_tmpfs(harness.daemon.root, ROOT_SIZE):
        start_harness(harness)
        try:
            yield harness
        finally:
            stop_harness(harness)


def test_disk_full_during_unpack_fails_the_pull_and_leaves_nothing(
    disk_harness: FaultHarness, registry: LocalRegistry
) -> None:
    harness = disk_harness
    ref = registry.ref("faults/zeros:1")
    registry.push("faults/zeros", "1", ZEROS)
    free_before = free_bytes(harness.daemon.root)
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    err = error_of(lambda: harness.call("PullImage", request))
    wrong = []  # everything that is wrong, so one run shows it all
    if err.code() not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        wrong.append(f"PullImage answered {err.code().name}: {err.details()}")
    if "No space left on device" not in (err.details() or ""):
        wrong.append(f"the error does not say the disk is full: {err.details()}")
    images = harness.call("ListImages", api_pb2.ListImagesRequest()).images
    wrong += [f"image {i.id} listed after a failed pull" for i in images if ref in i.repo_tags]
    wrong += harness.leaks()
    # What the failed unpack wrote is gone again (a little slack for sqlite's own files).
    if free_bytes(harness.daemon.root) < free_before - (256 << 10):
        wrong.append(f"{free_before - free_bytes(harness.daemon.root)} bytes not freed")
    none(wrong)
    harness.probe()
    none(harness.leaks())


def test_disk_full_while_logging_never_blocks_the_container_nor_tears_records(
    harness: FaultHarness,
) -> None:
    name = harness.fresh_name("logfull")
    with small_tmpfs(harness.log_dir / name, LOG_SIZE) as log_dir:
        fill(log_dir, leave=24 << 10)
        try:
            check_logging_on_a_full_disk(harness, name, log_dir)
        finally:
            harness.remove_everything()  # the shim holds the log file open until then
    harness.probe()


def settled(log: Path, quiet: float = 0.3, timeout: float = 10.0) -> bytes:
    """The log once it stopped changing (the shim drained what the container wrote)."""
    deadline = time.monotonic() + timeout
    data = log.read_bytes()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = log.read_bytes()
        if again == data:
            break
        data = again
    return data


def torn(log: Path) -> list[bytes]:
    """Lines of a CRI log file that are not whole records."""
    return [line for line in log.read_bytes().splitlines() if not RECORD.match(line)]


def check_logging_on_a_full_disk(harness: FaultHarness, name: str, log_dir: Path) -> None:
    pod_id = harness.run_pod(name)
    writer = (
        f"i=0; while [ $i -lt {LINES} ]; do "
        "echo line-$i-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; "
        "i=$((i+1)); done; touch /written; exec sleep 1000"
    )
    cid = harness.create(pod_id, "app", ["sh", "-c", writer])
    harness.start(cid)
    written = api_pb2.ExecSyncRequest(container_id=cid, cmd=["test", "-e", "/written"])
    deadline = time.monotonic() + 15
    while harness.call("ExecSync", written).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert harness.call("ExecSync", written).exit_code == 0, "the writer was blocked"
    log = log_dir / "app.log"
    logged = settled(log).count(b" stdout F line-")
    assert logged < LINES, "every line was logged: the disk never filled up"
    wrong = [f"torn record while the disk was full: {line!r}" for line in torn(log)]

    unfill(log_dir)
    marker = "after-free-marker"
    echo = ["sh", "-c", f"echo {marker} > /proc/1/fd/1"]
    harness.call("ExecSync", api_pb2.ExecSyncRequest(container_id=cid, cmd=echo))
    deadline = time.monotonic() + 5
    while marker.encode() not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not log.read_bytes().endswith(b" stdout F " + marker.encode() + b"\n"):
        wrong.append(
            f"no whole record of the output after space was freed: {log.read_bytes()[-200:]!r}"
        )

    harness.call("StopContainer", api_pb2.StopContainerRequest(container_id=cid, timeout=0))
    status = harness.wait_state(cid, api_pb2.CONTAINER_EXITED)
    if (status.state, status.exit_code) != (api_pb2.CONTAINER_EXITED, 137):
        wrong.append(f"stopped container is {status.state} with exit code {status.exit_code}")
    harness.remove_pod(pod_id)
    wrong += harness.leaks()
    none(wrong)
