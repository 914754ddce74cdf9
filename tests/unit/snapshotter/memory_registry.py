"""An in-memory registry behind httpx.MockTransport: several hosts, auth, scripted failures.

Hand-written fake for unit tests of the registry client and the puller; no sockets.
Hosts are keyed by host[:port]; a token service answers at http(s)://auth.test/token.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Literal

import httpx

from tests.support.oci_builder import Image, Index

_PATH: Final = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
TOKEN_HOST: Final = "auth.test"


class _Stream(httpx.AsyncByteStream):
    """A body that delivers `data` and then fails with `error`, if any."""

    def __init__(self, data: bytes, error: Exception | None) -> None:
        self._data, self._error = data, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self._data), 65536):
            yield self._data[i : i + 65536]
        if self._error is not None:
            raise self._error


@dataclass(slots=True, kw_only=True)
class MemoryHost:
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    auth: Literal["none", "basic", "bearer"] = "none"
    down: bool = False
    ranges: bool = True
    statuses: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses first
    break_after: dict[str, int] = field(default_factory=dict)  # digest -> bytes, then ReadError
    stall_after: dict[str, int] = field(default_factory=dict)  # digest -> bytes, then ReadTimeout
    content_type: dict[str, str] = field(default_factory=dict)  # ref -> Content-Type override
    chunked: bool = False  # omit Content-Length on manifests
    redirect_blobs: str = ""  # answer blob GETs with a 307 to http://<this host>/<digest>

    def add(self, repo: str, tag: str | None, target: Image | Index) -> None:
        images = target.images if isinstance(target, Index) else (target,)
        for image in images:
            self.blobs.update(image.blobs())
            self.manifests[(repo, image.digest)] = (image.manifest, image.media_type)
        body = target.data if isinstance(target, Index) else target.manifest
        self.manifests[(repo, target.digest)] = (body, target.media_type)
        if tag is not None:
            self.manifests[(repo, tag)] = (body, target.media_type)


class MemoryRegistry:
    """The MockTransport handler. `requests` records (host, method, path, headers)."""

    def __init__(self) -> None:
        self.hosts: dict[str, MemoryHost] = {}
        self.requests: list[httpx.Request] = []
        self.users: dict[str, str] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.issued = 0

    def host(self, name: str, **kwargs: object) -> MemoryHost:
        self.hosts[name] = MemoryHost(**kwargs)  # type: ignore[arg-type]
        return self.hosts[name]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self, host: str | None = None, kind: str = "") -> list[str]:
        return [
            r.url.path
            for r in self.requests
            if (host is None or r.url.netloc.decode() == host) and f"/{kind}" in r.url.path
        ]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        netloc = request.url.netloc.decode()
        if netloc == TOKEN_HOST:
            return self._token(request)
        host = self.hosts.get(netloc)
        if host is None or host.down:
            raise httpx.ConnectError("connection refused", request=request)
        queued = host.statuses.get(request.url.path)
        if queued:
            return httpx.Response(queued.pop(0), headers={"Retry-After": "0"}, json={"errors": []})
        if (denied := self._check_auth(host, request)) is not None:
            return denied
        return self._serve(host, request)

    def _check_auth(self, host: MemoryHost, request: httpx.Request) -> httpx.Response | None:
        given = request.headers.get("authorization", "")
        if host.auth == "basic":
            user, _, password = base64.b64decode(given[6:] or "Og==").decode().partition(":")
            if given.startswith("Basic ") and self.users.get(user) == password:
                return None
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="memory"'})
        if host.auth == "bearer":
            if given.startswith("Bearer token-"):
                return None
            challenge = f'Bearer realm="http://{TOKEN_HOST}/token",service="memory",scope="x"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            if form.get("refresh_token") not in self.refresh_tokens:
                return httpx.Response(401)
        elif given := request.headers.get("authorization", ""):
            user, _, password = base64.b64decode(given[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return httpx.Response(401)
        self.issued += 1
        return httpx.Response(200, json={"token": f"token-{self.issued}", "expires_in": 300})

    def _serve(self, host: MemoryHost, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/storage/"):
            return self._blob(host, request.url.path.removeprefix("/storage/"), request)
        m = _PATH.match(request.url.path)
        if m is None:
            return httpx.Response(200, json={})
        if m["kind"] == "manifests":
            found = host.manifests.get((m["repo"], m["ref"]))
            if found is None:
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            content_type = host.content_type.get(m["ref"], found[1])
            headers = {"Content-Type": content_type}
            if host.chunked:
                return httpx.Response(200, headers=headers, stream=_Stream(found[0], None))
            return httpx.Response(200, headers=headers, content=found[0])
        if host.redirect_blobs:
            location = f"http://{host.redirect_blobs}/storage/{m['ref']}"
            return httpx.Response(307, headers={"Location": location})
        return self._blob(host, m["ref"], request)

    def _blob(self, host: MemoryHost, digest: str, request: httpx.Request) -> httpx.Response:
        data = host.blobs.get(digest)
        if data is None:
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
        start = 0
        range_header = request.headers.get("range", "")
        if host.ranges and (rm := re.fullmatch(r"bytes=(\d+)-", range_header)):
            start = int(rm.group(1))
        body = data[start:]
        headers = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        cut, error = self._failure(host, digest, request)
        if cut is not None:
            return httpx.Response(status, headers=headers, stream=_Stream(body[:cut], error))
        return httpx.Response(status, headers=headers, stream=_Stream(body, None))

    def _failure(
        self, host: MemoryHost, digest: str, request: httpx.Request
    ) -> tuple[int | None, Exception | None]:
        if digest in host.break_after:
            return host.break_after.pop(digest), httpx.ReadError("broken", request=request)
        if digest in host.stall_after:
            return host.stall_after[digest], httpx.ReadTimeout("stalled", request=request)
        return None, None


def manifest_json(image: Image) -> dict[str, object]:
    doc: dict[str, object] = json.loads(image.manifest)
    return doc
