"""The one layer every RPC passes through: logging context, timing, metrics, and the single
table that turns error kinds into gRPC status codes.

Handlers raise errors from any package's ``errors.py``; they never call ``context.abort``.
Each failed call is logged once, here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from cri import metrics

log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Error kind (the ``kind`` class attribute of cri/shim/snapshotter errors) -> gRPC status.
STATUS_BY_KIND: dict[str, grpc.StatusCode] = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "internal": grpc.StatusCode.INTERNAL,
}

# Request fields worth a log key, by their CRI name.
_ID_FIELDS = ("pod_sandbox_id", "container_id")


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for an exception: its kind if it has one, else INTERNAL."""
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    kind = getattr(type(exc), "kind", None)
    if isinstance(kind, str):
        return STATUS_BY_KIND.get(kind, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


def request_keys(request: Any) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name in _ID_FIELDS:
        value: object = getattr(request, name, None)
        if isinstance(value, str) and value:
            keys[name] = value
    image: object = getattr(request, "image", None)
    ref: object = getattr(image, "image", None)
    if isinstance(ref, str) and ref:
        keys["image"] = ref
    return keys


def unary(
    method: str, handler: Callable[[Req], Awaitable[Resp]]
) -> Callable[[Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Wrap a unary handler ``async (request) -> response`` as a grpc.aio method."""

    async def call(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        started = time.perf_counter()
        metrics.CRI_REQUESTS_IN_FLIGHT.inc()
        code = grpc.StatusCode.OK
        try:
            return await handler(request)
        except Exception as exc:
            code = status_of(exc)
            _log_failure(method, request, exc, code, started)
            await context.abort(code, _message(exc))
            raise  # unreachable: abort raises
        finally:
            metrics.CRI_REQUESTS_IN_FLIGHT.dec()
            _observe(method, code, started)

    call.__name__ = method
    return call


def server_stream(
    method: str, handler: Callable[[Req], AsyncIterator[Resp]]
) -> Callable[[Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap a server-streaming handler ``(request) -> async iterator`` as a grpc.aio method."""

    async def call(
        request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            async for item in handler(request):
                yield item
        except Exception as exc:
            code = status_of(exc)
            _log_failure(method, request, exc, code, started)
            await context.abort(code, _message(exc))
        finally:
            _observe(method, code, started)

    call.__name__ = method
    return call


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def _log_failure(
    method: str, request: Any, exc: BaseException, code: grpc.StatusCode, started: float
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    keys = request_keys(request)
    if code == grpc.StatusCode.INTERNAL:
        log.error(
            "request failed",
            method=method,
            code=code.name,
            duration_ms=duration_ms,
            exc_info=exc,
            **keys,
        )
    else:
        log.info(
            "request failed",
            method=method,
            code=code.name,
            error=str(exc),
            duration_ms=duration_ms,
            **keys,
        )


def _observe(method: str, code: grpc.StatusCode, started: float) -> None:
    elapsed = time.perf_counter() - started
    metrics.CRI_REQUEST_DURATION.labels(method, code.name).observe(elapsed)
    if code != grpc.StatusCode.OK:
        metrics.CRI_REQUEST_ERRORS.labels(method, code.name).inc()
    if code == grpc.StatusCode.OK:
        log.debug("request done", method=method, duration_ms=round(elapsed * 1000, 3))
