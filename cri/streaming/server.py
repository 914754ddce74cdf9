"""The streaming HTTP server: one-time URLs for Exec, Attach and PortForward.

The RPC handlers call `get_exec`/`get_attach`/`get_port_forward`, which store the
request under a fresh token and return `<url>/<kind>/<token>`. The client (kubelet
proxying kubectl, or crictl) then connects once. Each connection serves exactly one
request::

    read head ─► route + consume token ─(404)─► ...
       ├─ WebSocket upgrade ─► 101 ─► channel framing (websocket.py)
       └─ SPDY/3.1 upgrade ──► negotiate X-Stream-Protocol-Version (400/403) ─► 101
                               ─► SPDY session ─► remote command / port forward

HTTP parsing is h11's; after the 101 the raw socket belongs to SPDY or wsproto.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import h11
import structlog
import wsproto
import wsproto.events as wsev
from wsproto.utilities import RemoteProtocolError

from cri import errors
from cri.api.v1 import api_pb2
from cri.streaming import portforward, remotecommand, tunnel, websocket
from cri.streaming.api import ProcessStream, StreamingBackend
from cri.streaming.remotecommand import Options
from cri.streaming.spdy_session import SpdySession
from cri.streaming.tokens import TokenCache

log = structlog.get_logger(__name__)

IDLE_TIMEOUT = 4 * 3600.0
_HEAD_TIMEOUT = 30.0
_HEAD_LIMIT = 64 * 1024

Request = api_pb2.ExecRequest | api_pb2.AttachRequest | api_pb2.PortForwardRequest
_PF_SPDY = list(portforward.SPDY_PROTOCOLS)  # what a WebSocket may tunnel
_KINDS: dict[str, type[Request]] = {
    "exec": api_pb2.ExecRequest,
    "attach": api_pb2.AttachRequest,
    "portforward": api_pb2.PortForwardRequest,
}


class HttpError(Exception):
    """Answer the request with this status instead of upgrading."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class StreamingServer:
    """Serves exec/attach/port-forward URLs on one TCP address.

    `address`/`port` say where to listen (port 0: any free port). `base_url`
    overrides the URL handed out (its path becomes the route prefix); by default it
    is `http://<address>:<bound port>`.
    """

    def __init__(
        self,
        backend: StreamingBackend,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        base_url: str | None = None,
        token_ttl: float = 60.0,
        max_pending: int = 1000,
        idle_timeout: float = IDLE_TIMEOUT,
        stream_creation_timeout: float = remotecommand.STREAM_CREATION_TIMEOUT,
    ) -> None:
        self._backend = backend
        self._address = address
        self._port = port
        self._base_url = base_url.rstrip("/") if base_url else None
        self._tokens: TokenCache[Request] = TokenCache(ttl=token_ttl, max_pending=max_pending)
        self._idle_timeout = idle_timeout
        self._creation_timeout = stream_creation_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- lifecycle

    async def start(self) -> None:
        """Listen; afterwards `url` is known."""
        self._server = await asyncio.start_server(
            self._on_connection, self._address, self._port, limit=_HEAD_LIMIT
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        if self._base_url is None:
            self._base_url = f"http://{_url_host(host)}:{port}"
        log.info("streaming server listening", url=self._base_url)

    async def stop(self) -> None:
        """Stop listening and end every open connection (their backends are closed)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        """The absolute base URL, e.g. http://127.0.0.1:40123 (after `start`)."""
        if self._base_url is None:
            raise RuntimeError("streaming server not started")
        return self._base_url

    # -- URLs for the RPC handlers

    def get_exec(self, req: api_pb2.ExecRequest) -> str:
        """Validate an ExecRequest and return its one-time URL.

        Raises errors.InvalidArgument (no container id, empty cmd, no stream,
        tty with stderr) or tokens.TooManyRequests.
        """
        if not req.cmd:
            raise errors.InvalidArgument(f"exec in container {req.container_id!r}: cmd is empty")
        _check_stdio(req, "exec")
        return self._issue("exec", req)

    def get_attach(self, req: api_pb2.AttachRequest) -> str:
        """Validate an AttachRequest and return its one-time URL (errors as get_exec)."""
        _check_stdio(req, "attach")
        return self._issue("attach", req)

    def get_port_forward(self, req: api_pb2.PortForwardRequest) -> str:
        """Return the one-time URL of a PortForwardRequest.

        Raises errors.InvalidArgument (no sandbox id, port out of range) or
        tokens.TooManyRequests.
        """
        if not req.pod_sandbox_id:
            raise errors.InvalidArgument("port forward: pod_sandbox_id is required")
        if bad := [p for p in req.port if not 0 < p < 65536]:
            raise errors.InvalidArgument(
                f"port forward to sandbox {req.pod_sandbox_id}: bad ports {bad}"
            )
        return self._issue("portforward", req)

    def _issue(self, kind: str, req: Request) -> str:
        stored = copy.deepcopy(req)  # the caller may reuse its message
        return f"{self.url}/{kind}/{self._tokens.insert(stored)}"

    # -- connections

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("streaming connection failed")
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            head, request = await _read_head(reader, conn)
            kind, stored = self._route(request)
            if _is_websocket(request):
                await self._serve_websocket(reader, writer, head, kind, stored, request)
            else:
                await self._serve_spdy(reader, writer, conn, kind, stored, request)
        except HttpError as exc:
            writer.write(_response(conn, exc.status, str(exc), exc.headers))
            await writer.drain()

    def _route(self, request: h11.Request) -> tuple[str, Request]:
        if request.method not in (b"GET", b"POST"):
            raise HttpError(405, "method not allowed")
        path = urlsplit(request.target.decode("latin-1")).path
        prefix = urlsplit(self.url).path
        kind, _, token = path.removeprefix(prefix).strip("/").partition("/")
        stored = self._tokens.consume(token) if kind in _KINDS and "/" not in token else None
        if stored is None or not isinstance(stored, _KINDS[kind]):
            raise HttpError(404, "404 page not found")
        return kind, stored

    # -- SPDY

    async def _serve_spdy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
        kind: str,
        stored: Request,
        request: h11.Request,
    ) -> None:
        supported = (
            portforward.SPDY_PROTOCOLS if kind == "portforward" else remotecommand.SPDY_PROTOCOLS
        )
        protocol = _negotiate_spdy(request, supported)
        writer.write(
            conn.send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        ("Connection", "Upgrade"),
                        ("Upgrade", "SPDY/3.1"),
                        ("X-Stream-Protocol-Version", protocol),
                    ],
                )
            )
        )
        stream_filter = portforward.check_stream_headers if kind == "portforward" else None
        session = SpdySession(
            reader, writer, idle_timeout=self._idle_timeout, stream_filter=stream_filter
        )
        log.info(
            "streaming session started",
            kind=kind,
            transport="spdy",
            protocol=protocol,
            **_ids(stored),
        )
        if isinstance(stored, api_pb2.PortForwardRequest):
            work = portforward.SpdyPortForward(
                session,
                self._backend,
                stored.pod_sandbox_id,
                creation_timeout=self._creation_timeout,
            ).run()
        else:
            work = self._spdy_remote_command(session, stored, protocol)
        await _drive(session, work)
        log.info("streaming session ended", kind=kind, transport="spdy", **_ids(stored))

    async def _spdy_remote_command(
        self,
        session: SpdySession,
        stored: api_pb2.ExecRequest | api_pb2.AttachRequest,
        protocol: str,
    ) -> None:
        version = remotecommand.protocol_version(protocol)
        expected = remotecommand.expected_stream_types(Options.of(stored), version)
        streams = await remotecommand.collect_streams(
            session.accept, expected, self._creation_timeout
        )
        session.stop_accepting()
        try:
            await remotecommand.serve(
                remotecommand.channels_from_streams(streams),
                self._starter(stored),
                style=remotecommand.status_style(version),
                report_exit_code=isinstance(stored, api_pb2.ExecRequest),
            )
        finally:
            for stream in streams.values():
                await stream.close()

    # -- WebSocket

    async def _serve_websocket(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        kind: str,
        stored: Request,
        request: h11.Request,
    ) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        offered = _websocket_request(ws, head).subprotocols
        if kind == "portforward" and (inner := tunnel.tunnelled(offered, _PF_SPDY)):
            writer.write(ws.send(wsev.AcceptConnection(subprotocol=inner)))
            conn = websocket.WsConnection(reader, writer, ws, idle_timeout=self._idle_timeout)
            assert isinstance(stored, api_pb2.PortForwardRequest)
            await self._serve_tunnel(conn, inner, stored)
            return
        supported = (
            websocket.PORT_FORWARD_PROTOCOLS if kind == "portforward" else websocket.EXEC_PROTOCOLS
        )
        protocol = websocket.choose_protocol(offered, supported)
        if protocol is None:
            raise HttpError(403, f"requested protocol(s) are not supported: {offered}")
        ports = _ports(stored, request) if isinstance(stored, api_pb2.PortForwardRequest) else []
        writer.write(ws.send(wsev.AcceptConnection(subprotocol=protocol.name or None)))
        conn = websocket.WsConnection(reader, writer, ws, idle_timeout=self._idle_timeout)
        log.info(
            "streaming session started",
            kind=kind,
            transport="websocket",
            protocol=protocol.name,
            **_ids(stored),
        )
        if isinstance(stored, api_pb2.PortForwardRequest):
            await websocket.serve_port_forward(
                conn, protocol, self._backend, stored.pod_sandbox_id, ports
            )
        else:
            await websocket.serve_remote_command(
                conn,
                protocol,
                Options.of(stored),
                self._starter(stored),
                report_exit_code=isinstance(stored, api_pb2.ExecRequest),
            )
        log.info("streaming session ended", kind=kind, transport="websocket", **_ids(stored))

    async def _serve_tunnel(
        self, conn: websocket.WsConnection, protocol: str, stored: api_pb2.PortForwardRequest
    ) -> None:
        """Port-forward over SPDY inside the WebSocket (see tunnel.py)."""
        inside = tunnel.Tunnel(conn)
        session = SpdySession(
            inside.reader,
            inside.writer,
            idle_timeout=self._idle_timeout,
            stream_filter=portforward.check_stream_headers,
        )
        log.info(
            "streaming session started",
            kind="portforward",
            transport="websocket",
            protocol=protocol,
            **_ids(stored),
        )
        work = portforward.SpdyPortForward(
            session, self._backend, stored.pod_sandbox_id, creation_timeout=self._creation_timeout
        ).run()
        pump = asyncio.create_task(inside.pump())
        try:
            await _drive(session, work)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await conn.close()
        log.info("streaming session ended", kind="portforward", transport="websocket",
                 **_ids(stored))  # fmt: skip

    def _starter(
        self, stored: api_pb2.ExecRequest | api_pb2.AttachRequest
    ) -> Callable[[], Awaitable[ProcessStream]]:
        if isinstance(stored, api_pb2.ExecRequest):
            return lambda: self._backend.exec(stored)
        return lambda: self._backend.attach(stored)


# ---------------------------------------------------------------- helpers


def _check_stdio(req: api_pb2.ExecRequest | api_pb2.AttachRequest, what: str) -> None:
    if not req.container_id:
        raise errors.InvalidArgument(f"{what}: container_id is required")
    if req.tty and req.stderr:
        raise errors.InvalidArgument(
            f"{what} in container {req.container_id}: tty and stderr cannot both be true"
        )
    if not (req.stdin or req.stdout or req.stderr):
        raise errors.InvalidArgument(
            f"{what} in container {req.container_id}: one of stdin, stdout or stderr must be set"
        )


def _url_host(host: str) -> str:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


def _ids(stored: Request) -> dict[str, str]:
    if isinstance(stored, api_pb2.PortForwardRequest):
        return {"pod_id": stored.pod_sandbox_id}
    return {"container_id": stored.container_id}


async def _read_head(
    reader: asyncio.StreamReader, conn: h11.Connection
) -> tuple[bytes, h11.Request]:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request header too large") from None
    except TimeoutError:
        raise ConnectionResetError("no request head in time") from None
    try:
        conn.receive_data(head)
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise HttpError(400, f"bad request: {exc}") from None
    if not isinstance(event, h11.Request):
        raise HttpError(400, "bad request")
    return head, event


def _header_values(request: h11.Request, name: bytes) -> list[str]:
    """All comma-separated values of a header, across repeated header lines."""
    values = []
    for key, value in request.headers:
        if key == name:
            values += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
    return values


def _is_websocket(request: h11.Request) -> bool:
    upgrade = [v.lower() for v in _header_values(request, b"upgrade")]
    connection = [v.lower() for v in _header_values(request, b"connection")]
    return upgrade == ["websocket"] and "upgrade" in connection


def _negotiate_spdy(request: h11.Request, supported: Sequence[str]) -> str:
    connection = [v.lower() for v in _header_values(request, b"connection")]
    upgrade = [v.lower() for v in _header_values(request, b"upgrade")]
    if "upgrade" not in connection or "spdy/3.1" not in upgrade:
        raise HttpError(400, "unable to upgrade: missing upgrade headers in request")
    offered = _header_values(request, b"x-stream-protocol-version")
    if not offered:
        raise HttpError(400, "unable to upgrade: X-Stream-Protocol-Version is required")
    for name in offered:
        if name in supported:
            return name
    raise HttpError(
        403,
        f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
        f"server accepts {list(supported)}",
        [("X-Accepted-Stream-Protocol-Versions", name) for name in supported],
    )


def _websocket_request(ws: wsproto.WSConnection, head: bytes) -> wsev.Request:
    try:
        ws.receive_data(head)
        event = next(iter(ws.events()), None)
    except RemoteProtocolError as exc:
        raise HttpError(400, f"bad websocket handshake: {exc}") from None
    if not isinstance(event, wsev.Request):
        raise HttpError(400, "bad websocket handshake")
    return event


def _ports(stored: api_pb2.PortForwardRequest, request: h11.Request) -> list[int]:
    """Ports for WebSocket port-forward: the CRI request's, else the `ports` query."""
    if stored.port:
        return list(stored.port)
    query = parse_qs(urlsplit(request.target.decode("latin-1")).query)
    try:
        ports = [portforward.parse_port(p) for v in query.get("ports", []) for p in v.split(",")]
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    if not ports:
        raise HttpError(400, 'query parameter "ports" is required')
    return ports


def _response(
    conn: h11.Connection, status: int, text: str, headers: Sequence[tuple[str, str]]
) -> bytes:
    body = (text + "\n").encode()
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *headers,
    ]
    try:
        return (
            conn.send(h11.Response(status_code=status, headers=fields))
            + conn.send(h11.Data(data=body))
            + conn.send(h11.EndOfMessage())
        )
    except h11.LocalProtocolError:  # the head was unparsable: h11 cannot answer it
        reason = {400: "Bad Request", 431: "Request Header Fields Too Large"}.get(status, "Error")
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in fields)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _drive(session: SpdySession, work: Awaitable[None]) -> None:
    """Run the session's frame loop and `work` together.

    When the work ends, close the session gracefully (GOAWAY, let the client read
    everything); when the connection ends first, cancel the work (which closes its
    backend).
    """
    reading = asyncio.create_task(session.run())
    working = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({reading, working}, return_when=asyncio.FIRST_COMPLETED)
        if working in done:
            await session.close()
            _log_outcome(working)
    finally:
        for task in (working, reading):
            task.cancel()
        await asyncio.gather(working, reading, return_exceptions=True)


def _log_outcome(task: asyncio.Future[None]) -> None:
    exc = task.exception()
    if isinstance(exc, remotecommand.StreamCreationTimeout):
        log.warning("streaming session setup timed out", error=str(exc))
    elif isinstance(exc, ConnectionError):
        log.info("streaming client went away", error=str(exc))
    elif exc is not None:
        log.error("streaming session failed", error=repr(exc), exc_info=exc)
