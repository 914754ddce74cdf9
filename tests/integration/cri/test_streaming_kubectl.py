"""Interop with real client-go: kubectl exec/attach/port-forward against our server.

kubectl talks to an API server, so a tiny fake one stands in: it answers discovery
and the pod GET, and for exec/attach/portforward obtains a URL from our streaming
server and proxies the raw upgrade to it — what kubelet does in a cluster. Skipped
when no kubectl binary is found (set BERTH_KUBECTL to choose one).
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cri.api.v1 import api_pb2
from cri.streaming import StreamingServer
from cri.streaming.testing import LocalBackend, echo, tcp_server


def find_kubectl() -> str | None:
    if chosen := os.environ.get("BERTH_KUBECTL"):
        return chosen
    versioned = sorted(
        glob.glob("/usr/lib/google-cloud-sdk/bin/kubectl.1.*"),
        key=lambda p: int(p.rsplit(".", 1)[1]),
    )
    return versioned[-1] if versioned else shutil.which("kubectl")


KUBECTL = find_kubectl()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary")

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "default", "uid": "u1"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "c",
                "ready": True,
                "restartCount": 0,
                "image": "busybox",
                "imageID": "",
                "state": {"running": {}},
            }
        ],
    },
}
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            },
            *(
                {
                    "name": f"pods/{sub}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": kind,
                    "verbs": ["create"],
                }
                for sub, kind in (
                    ("exec", "PodExecOptions"),
                    ("attach", "PodAttachOptions"),
                    ("portforward", "PodPortForwardOptions"),
                )
            ),
        ],
    },
}


class FakeApiServer:
    """Discovery + one pod; exec/attach/portforward proxied to the streaming server."""

    def __init__(self, streaming: StreamingServer) -> None:
        self._streaming = streaming

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            parts = urlsplit(target)
            subresource = parts.path.rsplit("/", 1)[1]
            if subresource in ("exec", "attach", "portforward"):
                await self._proxy(
                    reader, writer, head, target, self._url(subresource, parse_qs(parts.query))
                )
            else:
                body = json.dumps(DISCOVERY.get(parts.path, POD)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                writer.write(
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        finally:
            writer.close()

    def _url(self, subresource: str, query: dict[str, list[str]]) -> str:
        flags = {
            k: query.get(k, ["false"])[0] == "true" for k in ("stdin", "stdout", "stderr", "tty")
        }
        if subresource == "exec":
            return self._streaming.get_exec(
                api_pb2.ExecRequest(container_id="c", cmd=query["command"], **flags)
            )
        if subresource == "attach":
            return self._streaming.get_attach(api_pb2.AttachRequest(container_id="c", **flags))
        return self._streaming.get_port_forward(api_pb2.PortForwardRequest(pod_sandbox_id="p1"))

    async def _proxy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        target: str,
        url: str,
    ) -> None:
        parts = urlsplit(url)
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
        up_writer.write(head.replace(target.encode(), parts.path.encode(), 1))
        try:
            await asyncio.gather(_splice(reader, up_writer), _splice(up_reader, writer))
        finally:
            up_writer.close()


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[list[str], LocalBackend]]:
    backend = LocalBackend(attach_commands={"c": ["sh", "-c", "echo attached; cat"]})
    streaming = StreamingServer(backend)
    await streaming.start()
    assert KUBECTL is not None
    async with tcp_server(FakeApiServer(streaming).handle) as port:
        yield (
            [KUBECTL, f"--server=http://127.0.0.1:{port}", f"--cache-dir={tmp_path}/cache"],
            backend,
        )
    await streaming.stop()
    assert sorted(backend.closed) == sorted(backend.started)


async def run(
    argv: list[str], *, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": "/nonexistent", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out, err


SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
WEBSOCKET = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"}


@pytest.mark.parametrize("transport", [SPDY, WEBSOCKET], ids=["spdy", "websocket"])
async def test_kubectl_exec_with_stdin_and_exit_code(
    api: tuple[list[str], LocalBackend], transport: dict[str, str]
) -> None:
    kubectl, _ = api
    script = "echo out; cat; echo err >&2; exit 7"
    code, out, err = await run(
        [*kubectl, "exec", "-i", "p1", "--", "sh", "-c", script], stdin=b"in\n", env=transport
    )
    assert (code, out) == (7, b"out\nin\n"), err
    assert err.startswith(b"err\n") and b"command terminated with exit code 7" in err


@pytest.mark.parametrize("transport", [SPDY, WEBSOCKET], ids=["spdy", "websocket"])
async def test_kubectl_exec_large_output(
    api: tuple[list[str], LocalBackend], transport: dict[str, str]
) -> None:
    kubectl, _ = api
    code, out, err = await run(
        [*kubectl, "exec", "p1", "--", "head", "-c", "20000000", "/dev/zero"], env=transport
    )
    assert (code, len(out)) == (0, 20_000_000), err


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
@pytest.mark.parametrize("transport", [SPDY, WEBSOCKET], ids=["spdy", "websocket"])
async def test_kubectl_exec_tty_gets_the_terminal_size(
    api: tuple[list[str], LocalBackend], transport: dict[str, str]
) -> None:
    kubectl, backend = api
    remote = "'read line; stty size'"
    command = " ".join(
        ["stty cols 123 rows 45;", *kubectl, "exec", "-it", "p1", "--", "sh", "-c", remote]
    )
    proc = await asyncio.create_subprocess_exec(
        "script",
        "-qec",
        command,
        "/dev/null",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": "/nonexistent", **transport},
    )
    # The size travels on its own stream; let it land before the command asks for it.
    assert await asyncio.wait_for(backend.resizes.get(), 30) == (123, 45)
    out, _ = await asyncio.wait_for(proc.communicate(b"go\r"), 30)
    assert proc.returncode == 0
    assert b"45 123" in out


async def test_kubectl_attach(api: tuple[list[str], LocalBackend]) -> None:
    kubectl, _ = api
    code, out, err = await run([*kubectl, "attach", "-i", "p1"], stdin=b"hello\n", env=SPDY)
    assert (code, out) == (0, b"attached\nhello\n"), err


async def test_kubectl_port_forward_over_spdy(api: tuple[list[str], LocalBackend]) -> None:
    kubectl, backend = api

    async with tcp_server(echo) as target_port:
        await forward_through_kubectl(kubectl, target_port)
    assert backend.forwarded == [("p1", target_port)]


async def forward_through_kubectl(kubectl: list[str], target_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        *kubectl,
        "port-forward",
        "--address=127.0.0.1",
        "pod/p1",
        f":{target_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            "KUBECONFIG": "/nonexistent",
            "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false",
        },
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(
            proc.stdout.readline(), 30
        )  # "Forwarding from 127.0.0.1:N -> T"
        local_port = int(line.split(b" -> ")[0].rsplit(b":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", local_port)
        writer.write(b"through kubectl" * 1000)
        assert await asyncio.wait_for(reader.readexactly(15000), 10) == b"through kubectl" * 1000
        writer.close()
        await writer.wait_closed()
    finally:
        proc.terminate()
        await proc.wait()
