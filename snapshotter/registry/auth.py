"""Registry credentials and the WWW-Authenticate dance (anonymous, Basic, Bearer tokens).

A registry answers 401 with challenges such as
`Bearer realm="https://auth.example/token",service="registry",scope="repository:x:pull"`.
For Bearer we get a token from the realm — GET with `?service=&scope=` (Basic
credentials if we have some), or POST an OAuth2 refresh_token grant when the
credentials carry an identity token — and cache it per realm, service, scope
and credentials until shortly before it expires. A `registry_token` is used
as the bearer token directly. Secrets never reach logs or reprs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog

from snapshotter import errors

log = structlog.get_logger(__name__)

_MAX_TOKEN_RESPONSE: Final = 1 << 20
_DEFAULT_TOKEN_LIFETIME: Final = 60.0
_EXPIRY_MARGIN: Final = 10.0
_DOCKER_HOSTS: Final = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


class Unauthorized(errors.FailedPrecondition):
    """The registry refused us: no, wrong, or insufficient credentials."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Credentials:
    """Credentials for one registry, as in the CRI AuthConfig and docker's config.json.

    `server_address`, when set, limits them to that registry host.
    """

    username: str = ""
    password: str = ""
    auth: str = ""  # base64("user:password")
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    def __repr__(self) -> str:
        kinds = [
            k for k in ("password", "auth", "identity_token", "registry_token") if getattr(self, k)
        ]
        return f"Credentials(username={self.username!r}, set={kinds})"

    def basic(self) -> tuple[str, str] | None:
        """(username, password) from the fields or the decoded `auth`, if any."""
        if self.username and self.password:
            return self.username, self.password
        if not self.auth:
            return None
        try:
            user, sep, password = base64.b64decode(self.auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.InvalidArgument(
                "registry auth string is not base64 user:password"
            ) from None
        if not sep or not user:
            raise errors.InvalidArgument("registry auth string is not base64 user:password")
        return user, password

    def applies_to(self, host: str) -> bool:
        """Whether these credentials may be sent to `host` (host[:port])."""
        return not self.server_address or normalize_host(self.server_address) == normalize_host(
            host
        )

    def fingerprint(self) -> str:
        """A stable key for caches; a hash, so secrets are not kept as dict keys."""
        fields = (self.username, self.password, self.auth, self.identity_token, self.registry_token)
        return hashlib.sha256("\0".join(fields).encode()).hexdigest()[:32]


def normalize_host(value: str) -> str:
    """ "https://index.docker.io/v1/" → "docker.io"; "Reg.example:5000" → "reg.example:5000"."""
    value = value.strip()
    host = urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]
    host = host.lower()
    return "docker.io" if host in _DOCKER_HOSTS else host


def load_credentials_file(path: Path) -> dict[str, Credentials]:
    """Read docker's config.json `auths` map, keyed by normalised host. A missing file is {}."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise errors.InvalidArgument(f"registry credentials file {path}: {exc}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise errors.InvalidArgument(f"registry credentials file {path}: auths must be an object")
    return {normalize_host(host): _entry(path, host, entry) for host, entry in auths.items()}


def _entry(path: Path, host: str, entry: object) -> Credentials:
    if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
        raise errors.InvalidArgument(f"registry credentials file {path}: bad entry for {host}")
    creds = Credentials(
        username=entry.get("username", ""),
        password=entry.get("password", ""),
        auth=entry.get("auth", ""),
        identity_token=entry.get("identitytoken", ""),
        registry_token=entry.get("registrytoken", ""),
    )
    try:
        creds.basic()  # reject an undecodable auth string now, not at pull time
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"registry credentials file {path}: {host}: {exc}") from None
    return creds


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One WWW-Authenticate challenge; `scheme` is lower case, param names too."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM = re.compile(rf'[\s,]*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)')
_TOKEN68 = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*(?=\s*(?:,|$))")


def parse_challenges(values: Sequence[str]) -> list[Challenge]:
    """Parse WWW-Authenticate header values (each may hold several challenges)."""
    out = []
    for value in values:
        pos = 0
        while m := _SCHEME.match(value, pos):
            params, pos = _parse_params(value, m.end())
            out.append(Challenge(scheme=m.group(1).lower(), params=params))
    return out


def _parse_params(value: str, pos: int) -> tuple[dict[str, str], int]:
    params: dict[str, str] = {}
    if m := _TOKEN68.match(value, pos):
        return params, m.end()
    while m := _PARAM.match(value, pos):
        raw = m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[m.group(1).lower()] = raw
        pos = m.end()
    return params, pos


@dataclass(frozen=True, slots=True, kw_only=True)
class _Token:
    value: str
    expires_at: float


class Authorizer:
    """Turns 401 challenges into Authorization headers and caches bearer tokens.

    Keys are (registry url, credentials fingerprint, scope), so pulls with
    different credentials never share a token.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._schemes: dict[tuple[str, str], Challenge] = {}

    def cached(self, registry: str, creds: Credentials | None, scope: str) -> str | None:
        """The Authorization header to send up front, if an earlier challenge taught us one."""
        fp = creds.fingerprint() if creds else ""
        challenge = self._schemes.get((registry, fp))
        if challenge is None:
            return None
        if challenge.scheme == "basic" and creds is not None:
            return _basic_header(creds)
        token = self._tokens.get((registry, fp, scope))
        if token is not None and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        return None

    async def authorize(
        self,
        client: httpx.AsyncClient,
        registry: str,
        challenges: Sequence[Challenge],
        creds: Credentials | None,
        scope: str,
    ) -> str:
        """Answer a 401: the header to retry with. Raises Unauthorized if we cannot."""
        fp = creds.fingerprint() if creds else ""
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme:
            challenge = by_scheme["bearer"]
            self._schemes[(registry, fp)] = challenge
            if creds is not None and creds.registry_token:
                return f"Bearer {creds.registry_token}"
            token = await fetch_token(client, registry, challenge, creds, scope)
            self._tokens[(registry, fp, scope)] = token
            return f"Bearer {token.value}"
        if "basic" in by_scheme and creds is not None and creds.basic() is not None:
            self._schemes[(registry, fp)] = by_scheme["basic"]
            return _basic_header(creds)
        what = "credentials were refused" if creds else "it requires credentials"
        raise Unauthorized(f"registry {registry} denied access: {what}")

    def forget(self, registry: str, creds: Credentials | None, scope: str) -> None:
        """Drop a token the registry refused, so the next request asks for a fresh one."""
        self._tokens.pop((registry, creds.fingerprint() if creds else "", scope), None)


def _basic_header(creds: Credentials) -> str:
    pair = creds.basic()
    assert pair is not None
    return "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode()


async def fetch_token(
    client: httpx.AsyncClient,
    registry: str,
    challenge: Challenge,
    creds: Credentials | None,
    scope: str,
) -> _Token:
    """Get a bearer token from the challenge's realm for `scope`.

    Raises Unauthorized when the token server refuses the credentials,
    Unavailable when it cannot be reached, InvalidArgument for a bad realm or answer.
    """
    realm = challenge.params.get("realm", "")
    _check_realm(registry, realm, creds)
    scopes = [scope] + [s for s in challenge.params.get("scope", "").split(" ") if s and s != scope]
    service = challenge.params.get("service", "")
    try:
        response = await _token_request(client, realm, service, scopes, creds)
        async with contextlib.aclosing(response):
            return await _read_token(response, realm)
    except httpx.TransportError as exc:
        raise errors.Unavailable(f"token server {realm} unreachable: {exc!r}") from None


def _check_realm(registry: str, realm: str, creds: Credentials | None) -> None:
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidArgument(f"registry {registry} sent a bad token realm {realm!r}")
    # Credentials go over plain http only if the registry itself is plain http.
    if parts.scheme == "http" and creds is not None and registry.startswith("https:"):
        raise Unauthorized(f"registry {registry}: refusing to send credentials to {realm}")


async def _token_request(
    client: httpx.AsyncClient,
    realm: str,
    service: str,
    scopes: list[str],
    creds: Credentials | None,
) -> httpx.Response:
    if creds is not None and creds.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
        form |= {"service": service, "scope": " ".join(scopes), "client_id": "berth"}
        request = client.build_request("POST", realm, data=form)
    else:
        params: list[tuple[str, str | int | float | bool | None]] = []
        params += [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        basic = creds.basic() if creds is not None else None
        headers = {"Authorization": _basic_header(creds)} if basic and creds else {}
        request = client.build_request("GET", realm, params=params, headers=headers)
    return await client.send(request, stream=True)


async def _read_token(response: httpx.Response, realm: str) -> _Token:
    if response.status_code in (401, 403):
        raise Unauthorized(f"token server {realm} refused the credentials ({response.status_code})")
    if response.status_code != 200:
        raise errors.Unavailable(f"token server {realm} answered {response.status_code}")
    body = await read_bounded(response, _MAX_TOKEN_RESPONSE, what=f"token from {realm}")
    try:
        doc: Any = json.loads(body)
    except ValueError:
        raise errors.InvalidArgument(f"token server {realm} sent invalid JSON") from None
    value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(f"token server {realm} sent no token")
    lifetime = doc.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = _DEFAULT_TOKEN_LIFETIME
    expires = time.monotonic() + max(float(lifetime) - _EXPIRY_MARGIN, 1.0)
    return _Token(value=value, expires_at=expires)


async def read_bounded(response: httpx.Response, limit: int, *, what: str) -> bytes:
    """Read a streamed body of at most `limit` bytes; InvalidArgument if it is longer."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.InvalidArgument(f"{what} is {declared} bytes, more than {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise errors.InvalidArgument(f"{what} is more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
