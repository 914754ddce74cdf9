"""Port forwarding: one client stream pair per TCP connection into the pod.

Over SPDY (`portforward.k8s.io`) the client opens, per forwarded connection, an
`error` and a `data` stream carrying the same `requestid` and `port` headers. Once
both arrived we dial the port in the pod and copy bytes both ways; failures are
written as text on the error stream. (WebSocket port-forward lives in
`websocket.py` and reuses `forward()`.)

Ending a forwarded connection follows containerd: when one direction reaches EOF
we pass the EOF on (half-close) and give the other direction a short grace
period before cutting both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from cri.streaming.api import StreamingBackend
from cri.streaming.remotecommand import STREAM_CREATION_TIMEOUT, InputChannel, OutputChannel
from cri.streaming.spdy_session import SpdySession, SpdyStream

log = structlog.get_logger(__name__)

SPDY_PROTOCOLS = ("portforward.k8s.io",)
PORT_HEADER = "port"
REQUEST_ID_HEADER = "requestid"
_GRACE = 1.0
_READ_SIZE = 64 * 1024


async def forward(
    source: InputChannel,
    sink: OutputChannel,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Copy client→pod and pod→client until both directions ended (see module doc)."""
    to_pod = asyncio.create_task(_client_to_pod(source, writer))
    to_client = asyncio.create_task(_pod_to_client(reader, sink))
    tasks = {to_pod, to_client}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=_GRACE)
        for task in done:
            task.result()  # surface the first direction's error, if any
    finally:
        # Close before awaiting anything, so a second cancellation cannot leak it.
        writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _client_to_pod(source: InputChannel, writer: asyncio.StreamWriter) -> None:
    while chunk := await source.read():
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def _pod_to_client(reader: asyncio.StreamReader, sink: OutputChannel) -> None:
    while chunk := await reader.read(_READ_SIZE):
        await sink.write(chunk)
    await sink.close()


def parse_port(value: str) -> int:
    """A port header or query value as an int in 1..65535; ValueError otherwise."""
    port = int(value, 10)
    if not 0 < port < 65536:
        raise ValueError(f"port {value!r} must be in 1..65535")
    return port


def check_stream_headers(headers: Mapping[str, str]) -> str | None:
    """Why a port-forward stream must be refused, or None if its headers are fine."""
    try:
        parse_port(headers.get(PORT_HEADER, ""))
    except ValueError:
        return f"bad or missing {PORT_HEADER!r} header {headers.get(PORT_HEADER)!r}"
    if headers.get("streamtype") not in ("data", "error"):
        return f"invalid stream type {headers.get('streamtype')!r}"
    return None


def error_message(port: int, pod_sandbox_id: str, error: BaseException | str) -> str:
    """The text kubelet's streaming server writes on a port-forward error stream."""
    return f"error forwarding port {port} to pod {pod_sandbox_id}, uid : {error}"


# ---------------------------------------------------------------- SPDY


@dataclass(slots=True)
class _Pair:
    request_id: str
    data: SpdyStream | None = None
    error: SpdyStream | None = None

    def add(self, stream: SpdyStream) -> str | None:
        """Place `stream`; return a problem if that slot was taken."""
        slot = stream.headers.get("streamtype", "")
        if getattr(self, slot) is not None:
            return f"{slot} stream already assigned"
        setattr(self, slot, stream)
        return None

    @property
    def complete(self) -> bool:
        return self.data is not None and self.error is not None


class SpdyPortForward:
    """Serves the stream pairs of one SPDY port-forward connection."""

    def __init__(
        self,
        session: SpdySession,
        backend: StreamingBackend,
        pod_sandbox_id: str,
        *,
        creation_timeout: float = STREAM_CREATION_TIMEOUT,
    ) -> None:
        self._session = session
        self._backend = backend
        self._pod = pod_sandbox_id
        self._timeout = creation_timeout
        self._pairs: dict[str, tuple[_Pair, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        """Accept streams until the connection ends; forward every complete pair.

        When the connection ends, pending pairs and running forwards are cancelled
        (their streams are dead anyway).
        """
        tasks: set[asyncio.Task[None]] = set()
        try:
            while (stream := await self._session.accept()) is not None:
                if task := await self._place(stream):
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            pending = tasks | {timer for _, timer in self._pairs.values()}
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _place(self, stream: SpdyStream) -> asyncio.Task[None] | None:
        """File `stream` into its pair; start forwarding once the pair is complete."""
        request_id = _request_id(stream)
        if request_id not in self._pairs:
            pair = _Pair(request_id)
            self._pairs[request_id] = (pair, asyncio.create_task(self._expire(pair)))
        pair, timer = self._pairs[request_id]
        if problem := pair.add(stream):
            await _report(
                pair.error, f"error processing stream for request {request_id}: {problem}"
            )
            return None
        if not pair.complete:
            return None
        del self._pairs[request_id]
        timer.cancel()
        return asyncio.create_task(self._forward(pair))

    async def _expire(self, pair: _Pair) -> None:
        await asyncio.sleep(self._timeout)
        del self._pairs[pair.request_id]
        await _report(pair.error, f"timed out waiting for streams of request {pair.request_id}")
        for stream in (pair.data, pair.error):
            if stream is not None:
                await stream.abort()

    async def _forward(self, pair: _Pair) -> None:
        assert pair.data is not None and pair.error is not None
        port = parse_port(pair.data.headers[PORT_HEADER])
        try:
            reader, writer = await self._backend.port_forward(self._pod, port)
            await forward(pair.data, pair.data, reader, writer)
        except Exception as exc:  # reported to the client; never kills the connection
            log.info("port forward failed", pod_id=self._pod, port=port, error=str(exc))
            await _report(pair.error, error_message(port, self._pod, exc))
        finally:
            await pair.data.close()
            await pair.error.close()


async def _report(stream: SpdyStream | None, message: str) -> None:
    if stream is None:
        return
    with contextlib.suppress(ConnectionError):
        await stream.write(message.encode())


def _request_id(stream: SpdyStream) -> str:
    """The stream's request id; old clients without one get kubelet's stream-id guess."""
    if request_id := stream.headers.get(REQUEST_ID_HEADER):
        return request_id
    offset = 0 if stream.headers.get("streamtype") == "error" else 2
    return str(stream.stream_id - offset)
