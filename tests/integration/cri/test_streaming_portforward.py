"""Port-forward over SPDY (portforward.k8s.io) to a local TCP echo server: on an upgraded HTTP
connection, and tunnelled inside a WebSocket (``SPDY/3.1+portforward.k8s.io``, what current
kubectl and crictl use with ``--transport websocket``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cri.api.v1 import api_pb2
from cri.streaming import StreamingServer
from cri.streaming.client import SpdyClient, SpdyClientStream, UpgradeFailed
from cri.streaming.testing import LocalBackend, echo, tcp_server


@pytest.fixture
async def server() -> AsyncIterator[StreamingServer]:
    server = StreamingServer(LocalBackend(), stream_creation_timeout=1.0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async with tcp_server(echo) as port:
        yield port


@pytest.fixture(params=["spdy", "websocket-tunnel"])
async def client(
    server: StreamingServer, request: pytest.FixtureRequest
) -> AsyncIterator[SpdyClient]:
    url = server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="pod1"))
    if request.param == "spdy":
        client = await SpdyClient.connect(url, ["portforward.k8s.io"])
    else:
        client = await SpdyClient.connect_tunnelled(url)
    yield client
    await client.close()


async def open_pair(
    client: SpdyClient, port: int, request_id: str
) -> tuple[SpdyClientStream, SpdyClientStream]:
    """Like kubectl: the error stream first (closed for writing at once), then data."""
    headers = {"port": str(port), "requestid": request_id}
    error = await client.open_stream({**headers, "streamtype": "error"})
    await error.close()
    data = await client.open_stream({**headers, "streamtype": "data"})
    return error, data


async def test_forwarded_connections_echo_independently(client: SpdyClient, echo_port: int) -> None:
    assert client.protocol == "portforward.k8s.io"
    pairs = [await open_pair(client, echo_port, str(i)) for i in range(2)]
    for i, (_, data) in enumerate(pairs):
        await data.write(f"hello {i}".encode() * 10_000)
    for i, (error, data) in enumerate(pairs):
        await data.close()
        assert await data.read_all() == f"hello {i}".encode() * 10_000
        assert await error.read_all() == b""


async def test_a_refused_port_is_reported_on_the_error_stream(client: SpdyClient) -> None:
    error, data = await open_pair(client, 1, "0")
    assert (await error.read_all()).startswith(b"error forwarding port 1 to pod pod1, uid : ")
    assert await data.read_all() == b""


async def test_the_pod_closing_ends_the_data_stream(client: SpdyClient) -> None:
    async def hello_and_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.close()

    async with tcp_server(hello_and_bye) as port:
        _, data = await open_pair(client, port, "7")
        assert await data.read_all() == b"bye"


@pytest.mark.parametrize(
    "headers",
    [
        {"streamtype": "data"},
        {"streamtype": "data", "port": "0"},
        {"streamtype": "stdin", "port": "80"},
    ],
)
async def test_streams_with_bad_headers_are_refused(
    client: SpdyClient, headers: dict[str, str]
) -> None:
    with pytest.raises(ConnectionResetError, match="refused"):
        await client.open_stream(headers)


async def test_an_incomplete_pair_times_out_with_an_error(
    client: SpdyClient, echo_port: int
) -> None:
    error = await client.open_stream(
        {"port": str(echo_port), "requestid": "9", "streamtype": "error"}
    )
    assert b"timed out" in await asyncio.wait_for(error.read_all(), 5)


async def test_exec_protocols_are_refused_for_port_forward(server: StreamingServer) -> None:
    url = server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="pod1"))
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect(url, ["v4.channel.k8s.io"])
    assert failed.value.status == 403


async def test_a_tunnel_for_an_unknown_inner_protocol_is_refused(server: StreamingServer) -> None:
    url = server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="pod1"))
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect_tunnelled(url, ["v4.channel.k8s.io"])
    assert failed.value.status == 403


async def test_a_tunnel_is_offered_only_for_port_forward(server: StreamingServer) -> None:
    url = server.get_exec(api_pb2.ExecRequest(container_id="c1", cmd=["true"], stdout=True))
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect_tunnelled(url, ["portforward.k8s.io"])
    assert failed.value.status == 403
