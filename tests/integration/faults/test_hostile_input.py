"""Hostile values the fuzzer found, pinned as plain tests: log paths that climb out of the
pod's log directory, a cgroup parent that climbs out of berthd's cgroup, a pod name longer than
an environment string may be. Each is refused (INVALID_ARGUMENT) or kept inside berthd's own
places; nothing is written or created outside them and nothing leaks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from tests.integration.faults.harness import FaultHarness, error_of, none
from tests.support.cri_configs import container_config
from tests.support.failpoint_node import cgroup_bases
from tests.support.failpoints import Guard

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


@pytest.fixture
def guarded(harness: FaultHarness) -> Iterator[FaultHarness]:
    """The harness with runc guarded: a bundle that climbs out is refused, and journalled."""
    allowed = (str(harness.daemon.state), str(harness.daemon.root), "/sys")
    harness.points.arm(guard=Guard(mount_sources=allowed))
    yield harness
    harness.points.arm(guard=Guard())


def create_with_log_path(harness: FaultHarness, pod_id: str, log_path: str) -> grpc.RpcError | None:
    pod = harness.call("PodSandboxStatus", api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    sandbox = harness.pod_config(pod.status.metadata.name)
    sandbox.metadata.CopyFrom(pod.status.metadata)
    request = api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod_id,
        config=container_config("app", harness.image, ["sleep", "1000"], log_path=log_path),
        sandbox_config=sandbox,
    )
    try:
        harness.call("CreateContainer", request)
    except grpc.RpcError as exc:
        return exc
    return None


@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_a_log_path_never_leaves_the_pod_log_directory(
    harness: FaultHarness, tmp_path: Path, form: str
) -> None:
    escape = tmp_path / f"escaped-{secrets.token_hex(3)}.log"
    name = harness.fresh_name("logpath")
    log_dir = harness.log_dir / name
    log_path = str(escape) if form == "absolute" else "../" * 12 + str(escape).lstrip("/")
    pod_id = harness.run_pod(name)
    try:
        err = create_with_log_path(harness, pod_id, log_path)
        wrong = []
        if escape.exists():
            wrong.append(f"CreateContainer wrote the container log to {escape}, outside {log_dir}")
        if err is not None and err.code() != grpc.StatusCode.INVALID_ARGUMENT:
            wrong.append(f"refused with {err.code().name} (not INVALID_ARGUMENT): {err.details()}")
        harness.remove_pod(pod_id)
        wrong += harness.leaks()
        none(wrong)
    finally:
        escape.unlink(missing_ok=True)


def test_a_cgroup_parent_never_climbs_out_of_berthds_cgroup(guarded: FaultHarness) -> None:
    harness = guarded
    escape = f"berthescape{secrets.token_hex(3)}"
    config = harness.pod_config(harness.fresh_name("cgescape"))
    config.linux.cgroup_parent = f"../../../{escape}"
    wrong = []
    pod_id = ""
    try:
        request = api_pb2.RunPodSandboxRequest(config=config)
        pod_id = harness.call("RunPodSandbox", request).pod_sandbox_id
        harness.create(pod_id, "app", ["sleep", "1000"])
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            wrong.append(f"refused with {exc.code().name} (not INVALID_ARGUMENT)")
    finally:
        if pod_id:
            harness.remove_pod(pod_id)
    wrong += [
        f"runc was handed a bundle that climbs out: {c.message}" for c in harness.points.guarded()
    ]
    for base in cgroup_bases():
        if (outside := (base / "../../.." / escape).resolve()).exists():
            wrong.append(f"a cgroup was made outside berthd's: {outside}")
    none(wrong + harness.leaks())


@pytest.mark.parametrize(
    "name",
    ["n" * (200 << 10), "bad\x00name"],  # over MAX_ARG_STRLEN (128 KiB); a NUL byte
    ids=["longer-than-an-environment-string", "nul-byte"],
)
def test_a_pod_name_no_plugin_can_be_given_is_refused_and_poisons_nothing(
    harness: FaultHarness, name: str
) -> None:
    """CNI_ARGS carries the pod name to every plugin: a name the kernel cannot pass in an
    environment must be refused up front — and must never stop berthd from starting again."""
    config = harness.pod_config(harness.fresh_name("badname"))
    config.metadata.name = name
    err = error_of(
        lambda: harness.call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config))
    )
    wrong = []
    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        wrong.append(f"RunPodSandbox answered {err.code().name}: {(err.details() or '')[:200]}")
    wrong += harness.leaks()
    harness.daemon.stop()
    try:
        harness.daemon.start()
    except RuntimeError as exc:
        wrong.append(f"berthd does not start again: {str(exc)[-1500:]}")
        remove_cache_entries_naming(harness, name)  # so that the tests after this one can run
        harness.daemon.start()
    none(wrong)


def remove_cache_entries_naming(harness: FaultHarness, name: str) -> None:
    needle = json.dumps(name)[1:-1][:1000].encode()
    for entry in (harness.daemon.state / "cni").glob("*.json"):
        if needle in entry.read_bytes():
            entry.unlink()


def test_a_container_refused_after_its_shim_started_leaves_no_shim(harness: FaultHarness) -> None:
    """The shim is spawned while the rootfs and bundle are made: a user the image does not
    know is refused then (its /etc/passwd is read from the prepared rootfs), and the shim
    already spawned must go with everything else."""
    pod_id = harness.run_pod(harness.fresh_name("nouser"))
    pod = harness.call("PodSandboxStatus", api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    sandbox = harness.pod_config(pod.status.metadata.name)
    sandbox.metadata.CopyFrom(pod.status.metadata)
    config = container_config("app", harness.image, ["sleep", "1000"], log_path="app.log")
    config.linux.security_context.run_as_username = "nobody-in-this-image"
    request = api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox
    )
    err = error_of(lambda: harness.call("CreateContainer", request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "nobody-in-this-image" in (err.details() or "")
    none(harness.leaks())
    harness.remove_pod(pod_id)
    none(harness.leaks())
