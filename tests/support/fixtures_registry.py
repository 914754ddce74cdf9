"""pytest fixtures for registries. Load with `pytest_plugins = ["tests.support.fixtures_registry"]`.

- `registry` (session): plain-HTTP docker-registry holding busybox as
  `<host>/library/busybox:latest` and a multi-arch index (amd64 not first) as
  `<host>/library/busybox:multi`.
- `registry_factory`: start more registries (any `start_registry` options), stopped at the end.
- `tls_registry`, `basic_auth_registry`, `token_registry`: per-test variants, each with busybox
  pushed as library/busybox:latest.
- `fake_registry`: the scriptable in-process FakeRegistry.
- `test_ca`, `token_signing_key` (session): a CA and a JWT signing key.

Everything that needs docker-registry skips, with the reason, when the binary is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from snapshotter.registry.hosts import RegistryHosts
from tests.support.fake_registry import FakeRegistry
from tests.support.oci_builder import Image, Index, busybox_image, multiarch_index
from tests.support.registry import (
    REGISTRY_BINARY,
    CertAuthority,
    PushAuth,
    RegistryServer,
    SigningKey,
    TokenServer,
    make_ca,
    make_signing_key,
    push_image,
    start_registry,
)

__all__ = [
    "AuthRegistry",
    "LocalRegistry",
    "basic_auth_registry",
    "fake_registry",
    "registry",
    "registry_factory",
    "test_ca",
    "tls_registry",
    "token_registry",
    "token_signing_key",
]

USERNAME = "berth"
PASSWORD = "s3cret-pw"


def _require_binary() -> None:
    if not REGISTRY_BINARY.exists():
        pytest.skip(f"{REGISTRY_BINARY} is missing (Debian package docker-registry)")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRegistry:
    """A running registry and what was pushed to it."""

    server: RegistryServer
    busybox: Image
    multi: Index | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def url(self) -> str:
        return self.server.url

    def ref(self, name: str = "library/busybox:latest") -> str:
        """A reference on this registry, e.g. ref("library/busybox:multi")."""
        return f"{self.host}/{name}"

    def hosts(self) -> RegistryHosts:
        """RegistryHosts that reach this registry (plain http when it is not TLS)."""
        insecure = [self.host] if self.url.startswith("http:") else []
        return RegistryHosts(config_path=None, insecure=insecure)

    def push(self, repo: str, tag: str | None, image: Image | Index, **kwargs: Any) -> str:
        kwargs.setdefault("verify", self.server.ssl_context())
        return push_image(self.url, repo, tag, image, **kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRegistry(LocalRegistry):
    """A registry that wants credentials; `token` is set for Bearer auth."""

    username: str = USERNAME
    password: str = PASSWORD
    token: TokenServer | None = None

    def push(self, repo: str, tag: str | None, image: Image | Index, **kwargs: Any) -> str:
        kwargs.setdefault("auth", PushAuth(username=self.username, password=self.password))
        return LocalRegistry.push(self, repo, tag, image, **kwargs)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _require_binary()
    server = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        reg = LocalRegistry(server=server, busybox=busybox_image(), multi=None)
        reg.push("library/busybox", "latest", reg.busybox)
        multi = multiarch_index(reg.busybox)
        reg.push("library/busybox", "multi", multi)
        yield LocalRegistry(server=server, busybox=reg.busybox, multi=multi)
    finally:
        server.stop()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    _require_binary()
    started: list[RegistryServer] = []

    def start(**kwargs: Any) -> RegistryServer:
        server = start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def token_signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_signing_key(tmp_path_factory.mktemp("token-key"))


@pytest.fixture
def tls_registry(
    registry_factory: Callable[..., RegistryServer], test_ca: CertAuthority, tmp_path: Path
) -> LocalRegistry:
    server = registry_factory(tls=test_ca.issue(tmp_path / "server-cert"), ca=test_ca.cert)
    reg = LocalRegistry(server=server, busybox=busybox_image())
    reg.push("library/busybox", "latest", reg.busybox)
    return reg


@pytest.fixture
def basic_auth_registry(registry_factory: Callable[..., RegistryServer]) -> AuthRegistry:
    server = registry_factory(users={USERNAME: PASSWORD})
    reg = AuthRegistry(server=server, busybox=busybox_image())
    reg.push("library/busybox", "latest", reg.busybox)
    return reg


@pytest.fixture
def token_registry(
    registry_factory: Callable[..., RegistryServer], token_signing_key: SigningKey
) -> Iterator[AuthRegistry]:
    token = TokenServer(
        key=token_signing_key,
        users={USERNAME: PASSWORD},
        identity_tokens={"identity-token-for-berth": USERNAME},
    ).start()
    try:
        server = registry_factory(token=token)
        reg = AuthRegistry(server=server, busybox=busybox_image(), token=token)
        reg.push("library/busybox", "latest", reg.busybox)
        yield reg
    finally:
        token.stop()


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake
