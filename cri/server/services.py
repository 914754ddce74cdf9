"""Build the grpc.aio servicers for RuntimeService and ImageService from the handler table.

Every RPC of the proto gets a method: the handler from ``HANDLERS`` when there is one,
otherwise an UNIMPLEMENTED answer that names the RPC. Nothing fakes success.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from cri import errors, instrument
from cri.admin import add_admin_service
from cri.api.v1 import api_pb2, api_pb2_grpc
from cri.runtime import Runtime
from cri.server.handlers import HANDLERS

SERVICES = ("RuntimeService", "ImageService")


def add_services(server: grpc.aio.Server, rt: Runtime) -> None:
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(_servicer("RuntimeService", rt), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(_servicer("ImageService", rt), server)
    add_admin_service(server, rt)


def methods(service: str) -> list[tuple[str, bool]]:
    """(name, server_streaming) for every RPC of a service, in proto order."""
    descriptor = api_pb2.DESCRIPTOR.services_by_name[service]
    return [(m.name, bool(m.server_streaming)) for m in descriptor.methods]


def _servicer(service: str, rt: Runtime) -> Any:
    attrs: dict[str, Any] = {}
    for name, streaming in methods(service):
        handler = HANDLERS.get(name)
        bound = functools.partial(handler, rt) if handler else _unimplemented(service, name)
        if streaming:
            attrs[name] = _stream_method(instrument.server_stream(name, bound))
        else:
            attrs[name] = _unary_method(instrument.unary(name, bound))
    return type(f"{service}Servicer", (), attrs)()


# grpc.aio decides how to drive a method by its kind (coroutine function or async generator
# function), so the bound methods must be of the same kind as what they wrap.
def _unary_method(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def method(self: object, request: Any, context: Any) -> Any:
        return await fn(request, context)

    return method


def _stream_method(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def method(self: object, request: Any, context: Any) -> AsyncIterator[Any]:
        async for item in fn(request, context):
            yield item

    return method


def _unimplemented(service: str, name: str) -> Callable[[Any], Any]:
    def fail() -> errors.Unimplemented:
        return errors.Unimplemented(f"{service}.{name} is not implemented by berth yet")

    async def unary(request: Any) -> Awaitable[Any]:
        raise fail()

    async def stream(request: Any) -> AsyncIterator[Any]:
        raise fail()
        yield  # pragma: no cover - makes this an async generator

    streaming = dict(methods(service))[name]
    return stream if streaming else unary
