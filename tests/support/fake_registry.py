"""A scriptable OCI registry on loopback, for behaviour a real registry will not show on demand.

It serves what `add` gave it and records every request. Per blob, a test can make
the server drop the connection after N bytes, stall after N bytes, hold the
response until released, or ignore Range; per path, answer with queued error
statuses first. It is a threaded http.server in this process, so async tests
keep their event loop free while it works.

    with FakeRegistry() as fake:
        fake.add("library/app", "1", image)
        fake.drop_after[layer.digest] = 1000
        ...
        assert fake.blob_requests(layer.digest)[1].headers["Range"] == "bytes=1000-"
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Self

from tests.support.oci_builder import Image, Index

_PATH: Final = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/?]+)$")
_RANGE: Final = re.compile(r"bytes=(\d+)-$")
_HOLD_LIMIT: Final = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(slots=True, kw_only=True)
class _Scripts:
    drop_after: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    statuses: dict[str, list[int]] = field(default_factory=dict)


class FakeRegistry:
    """See the module docstring. `url` is http://127.0.0.1:<port>; `host` is 127.0.0.1:<port>."""

    def __init__(self, *, ranges: bool = True) -> None:
        self.ranges = ranges
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.scripts = _Scripts()
        self.drop_after = self.scripts.drop_after  # digest -> bytes sent before closing (once)
        self.stall_after = self.scripts.stall_after  # digest -> bytes sent before stalling
        self.hold = self.scripts.hold  # digest -> event set to let the response start
        self.statuses = self.scripts.statuses  # request path -> statuses to answer first
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unblock stalled and held responses, stop serving."""
        self.released.set()
        for event in self.hold.values():
            event.set()
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo: str, tag: str | None, target: Image | Index) -> None:
        """Serve `target` (and an index's images) under `repo`, by digest and by `tag`."""
        images = target.images if isinstance(target, Index) else (target,)
        for image in images:
            self.blobs.update(image.blobs())
            self.manifests[(repo, image.digest)] = (image.manifest, image.media_type)
        body = target.data if isinstance(target, Index) else target.manifest
        self.manifests[(repo, target.digest)] = (body, target.media_type)
        if tag is not None:
            self.manifests[(repo, tag)] = (body, target.media_type)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def blob_requests(self, digest: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{digest}")]

    def manifest_requests(self) -> list[Request]:
        return [r for r in self.requests if "/manifests/" in r.path]


def _handler(fake: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            _serve(fake, self, body=True)

        def do_HEAD(self) -> None:
            _serve(fake, self, body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _serve(fake: FakeRegistry, req: BaseHTTPRequestHandler, *, body: bool) -> None:
    fake.record(Request(method=req.command, path=req.path, headers=dict(req.headers.items())))
    queued = fake.statuses.get(req.path)
    if queued:
        _send(req, queued.pop(0), b'{"errors":[{"code":"UNAVAILABLE"}]}', "application/json")
        return
    if req.path == "/v2/":
        _send(req, 200, b"{}", "application/json")
        return
    m = _PATH.match(req.path)
    if m is None:
        _send(req, 404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', "application/json")
    elif m["kind"] == "manifests":
        _serve_manifest(fake, req, m["repo"], m["ref"], body=body)
    else:
        _serve_blob(fake, req, m["ref"], body=body)


def _send(req: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(len(data)))
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(data)


def _serve_manifest(
    fake: FakeRegistry, req: BaseHTTPRequestHandler, repo: str, ref: str, *, body: bool
) -> None:
    found = fake.manifests.get((repo, ref))
    if found is None:
        _send(req, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")
        return
    _send(req, 200, found[0], found[1])


def _serve_blob(
    fake: FakeRegistry, req: BaseHTTPRequestHandler, digest: str, *, body: bool
) -> None:
    data = fake.blobs.get(digest)
    if data is None:
        _send(req, 404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")
        return
    if digest in fake.hold:
        fake.hold[digest].wait(_HOLD_LIMIT)
    start = _range_start(req) if fake.ranges else None
    if start is not None and start >= len(data) > 0:
        _send(req, 416, b"", "text/plain")
        return
    req.send_response(200 if start is None else 206)
    req.send_header("Content-Type", "application/octet-stream")
    req.send_header("Accept-Ranges", "bytes" if fake.ranges else "none")
    if start is not None:
        req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    body_bytes = data[start or 0 :]
    req.send_header("Content-Length", str(len(body_bytes)))
    req.end_headers()
    if body:
        _write_body(fake, req, digest, body_bytes)


def _range_start(req: BaseHTTPRequestHandler) -> int | None:
    m = _RANGE.match(req.headers.get("Range", ""))
    return int(m.group(1)) if m else None


def _write_body(fake: FakeRegistry, req: BaseHTTPRequestHandler, digest: str, data: bytes) -> None:
    drop = fake.drop_after.pop(digest, None)
    stall = fake.stall_after.get(digest)
    cut = drop if drop is not None else stall
    req.wfile.write(data if cut is None else data[:cut])
    req.wfile.flush()
    if stall is not None and drop is None:
        fake.released.wait(_HOLD_LIMIT)
    if cut is not None:
        req.close_connection = True
        req.connection.shutdown(socket.SHUT_RDWR)
