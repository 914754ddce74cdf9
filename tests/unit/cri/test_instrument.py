from __future__ import annotations

import grpc
import pytest

from cri import errors as cri_errors
from cri import instrument
from cri.api.v1 import api_pb2
from cri.server import services
from shim import errors as shim_errors
from snapshotter import errors as snap_errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (cri_errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (shim_errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (snap_errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (snap_errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (shim_errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (cri_errors.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (ValueError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_one_table_maps_every_package_kind(exc: BaseException, code: grpc.StatusCode) -> None:
    assert instrument.status_of(exc) == code


def test_request_keys_pick_ids() -> None:
    req = api_pb2.CreateContainerRequest(pod_sandbox_id="p1")
    assert instrument.request_keys(req) == {"pod_sandbox_id": "p1"}
    pull = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="busybox"))
    assert instrument.request_keys(pull) == {"image": "busybox"}


def test_every_proto_rpc_has_a_method() -> None:
    for service in services.SERVICES:
        names = [name for name, _ in services.methods(service)]
        assert len(names) == len(set(names)) > 5
    streaming = dict(services.methods("RuntimeService"))
    assert streaming["GetContainerEvents"] and not streaming["Version"]


def test_every_rpc_has_a_handler() -> None:
    from cri.server.handlers import HANDLERS

    for service in services.SERVICES:
        missing = [name for name, _ in services.methods(service) if name not in HANDLERS]
        assert missing == [], f"{service} without handlers: {missing}"


async def test_an_rpc_without_a_handler_answers_unimplemented_naming_itself() -> None:
    fallback = services._unimplemented("RuntimeService", "Version")
    with pytest.raises(cri_errors.Unimplemented, match=r"RuntimeService\.Version"):
        await fallback(api_pb2.VersionRequest())
    stream = services._unimplemented("RuntimeService", "GetContainerEvents")
    with pytest.raises(cri_errors.Unimplemented, match="GetContainerEvents"):
        async for _ in stream(api_pb2.GetEventsRequest()):
            pass
