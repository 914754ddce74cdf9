"""A small synchronous CRI client over the generated stubs (berthctl, tests, benchmarks)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc

from cri.api.v1 import api_pb2_grpc

DEFAULT_ENDPOINT = "unix:///run/berth/berth.sock"


class CriClient:
    """``client.runtime.<Rpc>(req)`` and ``client.images.<Rpc>(req)`` with a default timeout."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, timeout: float = 30.0) -> None:
        if endpoint.startswith("/"):
            endpoint = f"unix://{endpoint}"
        self.endpoint = endpoint
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            endpoint,
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        self.runtime: Any = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images: Any = api_pb2_grpc.ImageServiceStub(self.channel)

    def call(self, service: str, method: str, request: Any, timeout: float | None = None) -> Any:
        stub = self.runtime if service == "runtime" else self.images
        return getattr(stub, method)(request, timeout=timeout or self.timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
