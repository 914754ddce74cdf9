"""Exec and attach over SPDY/3.1, end to end: real server, local processes, our client."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.streaming import StreamingServer, TooManyRequests
from cri.streaming.client import RemoteCommandStreams, SpdyClient, UpgradeFailed, exec_spdy
from cri.streaming.testing import LocalBackend


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(attach_commands={"c-main": ["sh", "-c", "echo attached; cat; exit 9"]})
    yield backend
    assert sorted(backend.closed) == sorted(backend.started), "a process was not closed"
    for pid in backend.started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
async def server(backend: LocalBackend) -> AsyncIterator[StreamingServer]:
    server = StreamingServer(backend, stream_creation_timeout=1.0)
    await server.start()
    yield server
    await server.stop()


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


async def test_exec_reports_output_and_a_non_zero_exit_code(server: StreamingServer) -> None:
    result = await exec_spdy(exec_url(server, "echo out; echo err >&2; exit 3"))
    assert (result.protocol, result.stdout, result.stderr) == (
        "v4.channel.k8s.io",
        b"out\n",
        b"err\n",
    )
    status = result.status
    assert status is not None and status["reason"] == "NonZeroExitCode"
    assert result.exit_code == 3


async def test_exec_success_is_a_success_status(server: StreamingServer) -> None:
    result = await exec_spdy(exec_url(server, "true"))
    assert result.status == {"metadata": {}, "status": "Success"}


async def test_stdin_reaches_the_process_and_its_eof_ends_it(server: StreamingServer) -> None:
    payload = os.urandom(1 << 20)
    result = await exec_spdy(exec_url(server, "cat", stdin=True), stdin=payload)
    assert result.stdout == payload
    assert result.exit_code == 0


async def test_tty_resize_reaches_the_terminal(
    server: StreamingServer, backend: LocalBackend
) -> None:
    client = await SpdyClient.connect(
        exec_url(server, "read line; stty size", stdin=True, tty=True)
    )
    try:
        streams = await RemoteCommandStreams.open(
            client, stdin=True, stdout=True, stderr=False, tty=True
        )
        assert streams.opened == ["error", "stdin", "stdout", "resize"]
        await streams.send_resize(100, 40)
        assert await asyncio.wait_for(backend.resizes.get(), 5) == (100, 40)
        assert streams.stdin is not None
        await streams.stdin.write(b"go\n")
        result = await streams.collect()
    finally:
        await client.close()
    assert b"40 100" in result.stdout
    assert result.exit_code == 0


async def test_disconnect_mid_exec_kills_the_process(
    server: StreamingServer, backend: LocalBackend
) -> None:
    client = await SpdyClient.connect(exec_url(server, "echo started; sleep 1000"))
    streams = await RemoteCommandStreams.open(
        client, stdin=False, stdout=True, stderr=True, tty=False
    )
    assert streams.stdout is not None
    assert await streams.stdout.read() == b"started\n"
    await client.close()
    pid = await asyncio.wait_for(backend.closings.get(), 5)
    assert pid == backend.started[0]


async def test_attach_streams_and_reports_success(server: StreamingServer) -> None:
    req = api_pb2.AttachRequest(container_id="c-main", stdin=True, stdout=True, stderr=True)
    result = await exec_spdy(server.get_attach(req), stdin=b"hello\n")
    assert result.stdout == b"attached\nhello\n"
    assert result.exit_code == 0  # attach does not report the container's exit code


async def test_attach_to_an_unknown_container_is_an_internal_error(server: StreamingServer) -> None:
    req = api_pb2.AttachRequest(container_id="gone", stdout=True)
    result = await exec_spdy(server.get_attach(req), stderr=False)
    status = result.status
    assert status is not None and status["reason"] == "InternalError"
    assert "container gone not found" in status["message"]


async def test_older_protocols_get_a_text_error(server: StreamingServer) -> None:
    url = exec_url(server, "exit 2", tty=True)
    result = await exec_spdy(url, stderr=False, tty=True, protocols=["v2.channel.k8s.io"])
    assert result.protocol == "v2.channel.k8s.io"
    assert result.error == b"command terminated with non-zero exit code: exit status 2"


async def test_tokens_are_single_use_and_unknown_ones_404(server: StreamingServer) -> None:
    url = exec_url(server, "true")
    await exec_spdy(url)
    for bad in (
        url,
        f"{server.url}/exec/notatokn",
        f"{server.url}/attach/x/y",
        f"{server.url}/other",
    ):
        with pytest.raises(UpgradeFailed) as failed:
            await SpdyClient.connect(bad)
        assert failed.value.status == 404


async def test_a_token_of_another_kind_is_404(server: StreamingServer) -> None:
    token = urlsplit(exec_url(server, "true")).path.rsplit("/", 1)[1]
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect(f"{server.url}/attach/{token}")
    assert failed.value.status == 404


async def test_expired_tokens_404(backend: LocalBackend) -> None:
    server = StreamingServer(backend, token_ttl=0.0)
    await server.start()
    try:
        with pytest.raises(UpgradeFailed) as failed:
            await SpdyClient.connect(exec_url(server, "true"))
        assert failed.value.status == 404
    finally:
        await server.stop()


async def test_protocol_negotiation_failures(server: StreamingServer) -> None:
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect(exec_url(server, "true"), protocols=["v9.channel.k8s.io"])
    assert failed.value.status == 403
    accepted = [
        v for k, v in failed.value.headers if k.lower() == "x-accepted-stream-protocol-versions"
    ]
    assert accepted == [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ]
    with pytest.raises(UpgradeFailed) as failed:
        await SpdyClient.connect(exec_url(server, "true"), protocols=[])
    assert failed.value.status == 400


async def test_a_request_without_upgrade_is_400(server: StreamingServer) -> None:
    parts = urlsplit(exec_url(server, "true"))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"missing upgrade headers" in response


async def test_missing_streams_time_out_and_start_nothing(
    server: StreamingServer, backend: LocalBackend
) -> None:
    client = await SpdyClient.connect(exec_url(server, "true", stdin=True))
    try:
        await client.open_stream({"streamtype": "error"})
        await asyncio.wait_for(client.wait_closed(), 5)  # creation timeout is 1 s here
    finally:
        await client.close()
    assert backend.started == []


async def test_a_malformed_frame_closes_only_its_connection(server: StreamingServer) -> None:
    healthy = await SpdyClient.connect(exec_url(server, "cat", stdin=True))
    broken = await SpdyClient.connect(exec_url(server, "true"))
    try:
        streams = await RemoteCommandStreams.open(
            healthy, stdin=True, stdout=True, stderr=True, tty=False
        )
        await broken.send_raw(b"\x80\x03\x00\x01\x00\x00\x00\x02xx")  # SYN_STREAM cut short
        await asyncio.wait_for(broken.wait_closed(), 5)
        assert broken.goaway.is_set()
        assert streams.stdin is not None and streams.stdout is not None
        await streams.stdin.write(b"still alive\n")
        assert await streams.stdout.read() == b"still alive\n"
        await streams.stdin.close()
        assert (await streams.collect()).exit_code == 0
    finally:
        await healthy.close()
        await broken.close()


async def test_idle_connections_are_closed(backend: LocalBackend) -> None:
    server = StreamingServer(backend, idle_timeout=0.3)
    await server.start()
    try:
        client = await SpdyClient.connect(exec_url(server, "sleep 1000"))
        await RemoteCommandStreams.open(client, stdin=False, stdout=True, stderr=True, tty=False)
        await asyncio.wait_for(client.wait_closed(), 5)
        await asyncio.wait_for(backend.closings.get(), 5)
        await client.close()
    finally:
        await server.stop()


async def test_stop_ends_open_sessions(backend: LocalBackend) -> None:
    server = StreamingServer(backend)
    await server.start()
    client = await SpdyClient.connect(exec_url(server, "echo up; sleep 1000"))
    streams = await RemoteCommandStreams.open(
        client, stdin=False, stdout=True, stderr=True, tty=False
    )
    assert streams.stdout is not None and await streams.stdout.read() == b"up\n"
    await server.stop()
    await asyncio.wait_for(client.wait_closed(), 5)
    await client.close()
    assert backend.closed == backend.started


async def test_pending_urls_are_capped(backend: LocalBackend) -> None:
    server = StreamingServer(backend, max_pending=1000)
    await server.start()
    try:
        urls = [exec_url(server, "true") for _ in range(1000)]
        with pytest.raises(TooManyRequests):
            exec_url(server, "true")
        await exec_spdy(urls[0])  # using one frees one
        exec_url(server, "true")
    finally:
        await server.stop()


def test_requests_are_validated() -> None:
    server = StreamingServer(LocalBackend(), base_url="http://node:10010")
    good = api_pb2.ExecRequest(container_id="c1", cmd=["ls"], stdout=True)
    assert server.get_exec(good).startswith("http://node:10010/exec/")
    bad = [
        api_pb2.ExecRequest(container_id="c1", cmd=["ls"], stdout=True, tty=True, stderr=True),
        api_pb2.ExecRequest(container_id="c1", cmd=["ls"]),
        api_pb2.ExecRequest(container_id="c1", stdout=True),
        api_pb2.ExecRequest(cmd=["ls"], stdout=True),
    ]
    for req in bad:
        with pytest.raises(errors.InvalidArgument):
            server.get_exec(req)
    with pytest.raises(errors.InvalidArgument):
        server.get_attach(
            api_pb2.AttachRequest(container_id="c1", tty=True, stdout=True, stderr=True)
        )
    with pytest.raises(errors.InvalidArgument):
        server.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id=""))
    assert "/portforward/" in server.get_port_forward(
        api_pb2.PortForwardRequest(pod_sandbox_id="p", port=[80])
    )


async def test_exec_stdout_throughput(server: StreamingServer) -> None:
    """Benchmark: 100 MiB of stdout through SPDY; prints MB/s, asserts only correctness."""
    size = 100 * 1024 * 1024
    client = await SpdyClient.connect(exec_url(server, f"head -c {size} /dev/zero"))
    try:
        start = time.perf_counter()
        streams = await RemoteCommandStreams.open(
            client, stdin=False, stdout=True, stderr=True, tty=False
        )
        assert streams.stdout is not None
        received = 0
        while chunk := await streams.stdout.read():
            received += len(chunk)
        elapsed = time.perf_counter() - start
        assert (await streams.error.read_all()).endswith(b'"Success"}')
    finally:
        await client.close()
    assert received == size
    rate = size / elapsed / 1e6
    print(f"\nexec stdout over SPDY: {rate:.0f} MB/s ({size >> 20} MiB in {elapsed:.2f} s)")


async def test_stop_does_not_wait_for_silent_connections(backend: LocalBackend) -> None:
    server = StreamingServer(backend)
    await server.start()
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"GET /exec/")  # a head that never completes
    await writer.drain()
    await asyncio.wait_for(server.stop(), 5)
    assert await reader.read() == b""
    writer.close()


async def test_streams_beyond_the_expected_ones_are_refused(server: StreamingServer) -> None:
    client = await SpdyClient.connect(exec_url(server, "cat", stdin=True))
    try:
        streams = await RemoteCommandStreams.open(
            client, stdin=True, stdout=True, stderr=True, tty=False
        )
        with pytest.raises(ConnectionResetError, match="refused"):
            await client.open_stream({"streamtype": "stdout"})
        assert streams.stdin is not None
        await streams.stdin.close()
        assert (await streams.collect()).exit_code == 0
    finally:
        await client.close()
