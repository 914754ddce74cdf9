"""Exec, attach and port-forward against real containers through berthd's streaming server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cri.api.v1 import api_pb2
from cri.streaming.client import exec_spdy, exec_websocket
from tests.integration.cri.test_pod_e2e import create_start, run_pod, wait_state
from tests.support.berthd import Berthd
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


@pytest.fixture
def running(pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path) -> tuple[str, str]:
    pod_id = run_pod(pod_berthd, "stream", tmp_path)
    cid = create_start(
        pod_berthd,
        pod_id,
        "app",
        registry.ref(),
        ["sh", "-c", "echo started; exec httpd -f -p 8080 -h /etc"],
        tmp_path,
    )
    assert wait_state(pod_berthd, cid, api_pb2.CONTAINER_RUNNING).state == (
        api_pb2.CONTAINER_RUNNING
    )
    return pod_id, cid


def exec_url(daemon: Berthd, cid: str, cmd: list[str], **flags: bool) -> str:
    req = api_pb2.ExecRequest(container_id=cid, cmd=cmd, **flags)
    return str(daemon.client.runtime.Exec(req).url)


def test_exec_over_spdy_with_stdin_and_exit_code(
    pod_berthd: Berthd, running: tuple[str, str]
) -> None:
    _, cid = running
    url = exec_url(
        pod_berthd,
        cid,
        ["sh", "-c", "cat; echo err >&2; exit 4"],
        stdin=True,
        stdout=True,
        stderr=True,
    )
    assert url.startswith("http://127.0.0.1:")
    result = asyncio.run(exec_spdy(url, stdin=b"hello through spdy\n"))
    assert result.stdout == b"hello through spdy\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 4


def test_exec_over_websocket_v5(pod_berthd: Berthd, running: tuple[str, str]) -> None:
    _, cid = running
    url = exec_url(pod_berthd, cid, ["sh", "-c", "tr a-z A-Z"], stdin=True, stdout=True)
    result = asyncio.run(exec_websocket(url, stdin=b"shout\n"))
    assert result.stdout == b"SHOUT\n"
    assert result.exit_code == 0


def test_exec_with_tty(pod_berthd: Berthd, running: tuple[str, str]) -> None:
    _, cid = running
    url = exec_url(
        pod_berthd, cid, ["sh", "-c", "tty >/dev/null && echo is-a-tty"], stdout=True, tty=True
    )
    result = asyncio.run(exec_spdy(url, tty=True, stderr=False))
    assert b"is-a-tty" in result.stdout


def test_port_forward_reaches_the_pod(pod_berthd: Berthd, running: tuple[str, str]) -> None:
    from cri.streaming.client import SpdyClient

    pod_id, _ = running
    url = pod_berthd.client.runtime.PortForward(
        api_pb2.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080])
    ).url

    async def fetch() -> bytes:
        client = await SpdyClient.connect(url, ("portforward.k8s.io",))
        try:
            headers = {"port": "8080", "requestid": "1"}
            error = await client.open_stream({**headers, "streamtype": "error"})
            data = await client.open_stream({**headers, "streamtype": "data"})
            await data.write(b"GET /hostname HTTP/1.0\r\n\r\n")
            await data.close()
            body = await data.read_all()
            assert await error.read_all() == b""
            return body
        finally:
            await client.close()

    body = asyncio.run(fetch())
    assert body.startswith(b"HTTP/1.") and b"stream" in body


def test_exec_into_a_stopped_container_is_refused(
    pod_berthd: Berthd, running: tuple[str, str]
) -> None:
    import grpc

    _, cid = running
    pod_berthd.client.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid))
    with pytest.raises(grpc.RpcError) as info:
        exec_url(pod_berthd, cid, ["true"], stdout=True)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
