"""The wire codec of the shim's records."""

from __future__ import annotations

from pathlib import Path

import pytest

from shim import api, errors


def test_create_params_round_trip() -> None:
    p = api.CreateParams(
        bundle="/b",
        runtime_root="/run/runc",
        runtime_options=("--systemd-cgroup",),
        rootfs_mounts=(api.Mount(type="overlay", source="overlay", options=("lowerdir=/a",)),),
        log_path="/var/log/x.log",
        tty=True,
        stdin=True,
    )
    assert api.from_wire(api.CreateParams, api.to_wire(p)) == p


def test_bytes_travel_as_base64() -> None:
    r = api.ExecSyncResult(stdout=b"\x00\xffout", stderr=b"", exit_code=3, timed_out=True)
    wire = api.to_wire(r)
    assert isinstance(wire["stdout"], str)
    assert api.from_wire(api.ExecSyncResult, wire) == r


def test_paths_and_optional_floats() -> None:
    spec = api.ShimSpec(id="c", state_dir=Path("/run/x"))
    assert api.from_wire(api.ShimSpec, api.to_wire(spec)) == spec
    assert api.from_wire(api.WaitParams, {"timeout": None}).timeout is None
    assert api.from_wire(api.WaitParams, {"timeout": 2}).timeout == 2.0


def test_unknown_keys_are_ignored_for_version_skew() -> None:
    st = api.from_wire(api.TaskState, {"id": "c", "status": "running", "new_field": [1]})
    assert st == api.TaskState(id="c", status="running")


@pytest.mark.parametrize(
    "data",
    [
        {"status": "running"},
        {"id": 1, "status": "running"},
        {"id": "c", "status": "running", "pid": True},
        {"id": "c", "status": "running", "pid": "1"},
        [],
    ],
    ids=["missing", "int for str", "bool for int", "str for int", "not an object"],
)
def test_bad_records_are_invalid_arguments(data: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        api.from_wire(api.TaskState, data)


def test_nested_and_list_errors() -> None:
    with pytest.raises(errors.InvalidArgument, match="rootfs_mounts"):
        api.from_wire(api.CreateParams, {"bundle": "/b", "runtime_root": "/r", "rootfs_mounts": {}})
    with pytest.raises(errors.InvalidArgument, match="base64"):
        api.from_wire(api.ExecSyncResult, {"stdout": "!!", "stderr": "", "exit_code": 0})
    with pytest.raises(errors.InvalidArgument, match="object"):
        api.from_wire(api.UpdateParams, {"resources": []})


@pytest.mark.parametrize("cid", ["", "../x", "a/b", "-x", "x" * 129, "a b"])
def test_unsafe_ids_are_refused(cid: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        api.ShimSpec(id=cid, state_dir=Path("/run/s")).validate()


def test_relative_state_dir_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument):
        api.ShimSpec(id="c1", state_dir=Path("run/s")).validate()
    api.ShimSpec(id="a" * 64, state_dir=Path("/run/s")).validate()
