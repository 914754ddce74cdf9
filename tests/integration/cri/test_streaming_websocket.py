"""Exec, attach and port-forward over WebSocket, end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from cri.api.v1 import api_pb2
from cri.streaming import StreamingServer
from cri.streaming.client import UpgradeFailed, WsClient, exec_websocket
from cri.streaming.testing import LocalBackend, echo, tcp_server


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend()
    yield backend
    assert sorted(backend.closed) == sorted(backend.started)


@pytest.fixture
async def server(backend: LocalBackend) -> AsyncIterator[StreamingServer]:
    server = StreamingServer(backend)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async with tcp_server(echo) as port:
        yield port


def exec_url(
    server: StreamingServer, script: str, *, stdin: bool = False, tty: bool = False
) -> str:
    req = api_pb2.ExecRequest(
        container_id="c1",
        cmd=["sh", "-c", script],
        stdin=stdin,
        stdout=True,
        stderr=not tty,
        tty=tty,
    )
    return server.get_exec(req)


async def test_v5_close_signal_ends_stdin(server: StreamingServer) -> None:
    result = await exec_websocket(
        exec_url(server, "cat; echo done >&2; exit 4", stdin=True), stdin=b"data\n"
    )
    assert (result.protocol, result.stdout, result.stderr) == (
        "v5.channel.k8s.io",
        b"data\n",
        b"done\n",
    )
    assert result.exit_code == 4


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
async def test_v4_binary_and_base64_report_status_json(
    server: StreamingServer, protocol: str
) -> None:
    result = await exec_websocket(exec_url(server, "printf 'a\\0b'; exit 1"), [protocol])
    assert (result.protocol, result.stdout) == (protocol, b"a\0b")
    assert result.exit_code == 1


@pytest.mark.parametrize("protocol", ["channel.k8s.io", "base64.channel.k8s.io"])
async def test_pre_v4_protocols_report_errors_as_text(
    server: StreamingServer, protocol: str
) -> None:
    result = await exec_websocket(exec_url(server, "exit 6"), [protocol])
    assert result.error == b"command terminated with non-zero exit code: exit status 6"


async def test_first_message_announces_the_session(server: StreamingServer) -> None:
    client = await WsClient.connect(exec_url(server, "sleep 0.1; echo x"), ["v4.channel.k8s.io"])
    try:
        assert await client.receive() == (1, b"")
        assert await client.receive() == (1, b"x\n")
    finally:
        await client.close()


async def test_resize_on_channel_4(server: StreamingServer, backend: LocalBackend) -> None:
    client = await WsClient.connect(
        exec_url(server, "read l; stty size", stdin=True, tty=True), ["v5.channel.k8s.io"]
    )
    try:
        await client.send(4, json.dumps({"Width": 90, "Height": 30}).encode())
        assert await asyncio.wait_for(backend.resizes.get(), 5) == (90, 30)
        await client.send(0, b"go\n")
        out = b""
        while (message := await client.receive()) is not None:
            out += message[1] if message[0] == 1 else b""
    finally:
        await client.close()
    assert b"30 90" in out


async def test_disconnect_mid_exec_kills_the_process(
    server: StreamingServer, backend: LocalBackend
) -> None:
    client = await WsClient.connect(exec_url(server, "sleep 1000"), ["v5.channel.k8s.io"])
    assert await client.receive() == (1, b"")
    await client.close()
    assert await asyncio.wait_for(backend.closings.get(), 5) == backend.started[0]


async def test_unsupported_subprotocols_are_refused(server: StreamingServer) -> None:
    with pytest.raises(UpgradeFailed) as failed:
        await WsClient.connect(exec_url(server, "true"), ["v9.channel.k8s.io"])
    assert failed.value.status == 403


async def test_port_forward_prefixes_each_channel_with_its_port(
    server: StreamingServer, echo_port: int
) -> None:
    url = server.get_port_forward(
        api_pb2.PortForwardRequest(pod_sandbox_id="pod1", port=[echo_port])
    )
    client = await WsClient.connect(url, ["v4.channel.k8s.io"], port_forward=True)
    try:
        prefix = echo_port.to_bytes(2, "little")
        first, second = await client.receive(), await client.receive()
        assert {first, second} == {(0, prefix), (1, prefix)}
        await client.send(0, b"ping")
        assert await client.receive() == (0, b"ping")
    finally:
        await client.close()


async def test_port_forward_ports_from_the_query(server: StreamingServer, echo_port: int) -> None:
    url = server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="pod1"))
    client = await WsClient.connect(
        f"{url}?ports={echo_port}", ["v4.base64.channel.k8s.io"], port_forward=True
    )
    try:
        await client.receive()
        await client.receive()
        await client.send(0, b"\x00\xff")
        assert await client.receive() == (0, b"\x00\xff")
    finally:
        await client.close()


async def test_port_forward_failure_is_written_on_the_error_channel(
    server: StreamingServer,
) -> None:
    url = server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="pod1", port=[1]))
    client = await WsClient.connect(url, [], port_forward=True)
    try:
        messages = []
        while (message := await client.receive()) is not None:
            messages.append(message)
    finally:
        await client.close()
    errors = b"".join(data for channel, data in messages[2:] if channel == 1)
    assert errors.startswith(b"error forwarding port 1 to pod pod1, uid : ")
