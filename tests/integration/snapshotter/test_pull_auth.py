"""Pulling with Basic and Bearer auth, over TLS with a custom CA, and through mirrors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.puller import Puller
from snapshotter.reference import parse
from snapshotter.registry.auth import Credentials, Unauthorized
from snapshotter.registry.hosts import RegistryHosts
from tests.support.fixtures_registry import PASSWORD, USERNAME, AuthRegistry, LocalRegistry
from tests.support.oci_builder import busybox_image
from tests.support.registry import CertAuthority, RegistryServer, free_port, push_image

pytestmark = pytest.mark.registry


async def pull(
    tmp_path: Path, hosts: RegistryHosts, ref: str, auth: Credentials | None = None, **kw: object
) -> str:
    puller = Puller(ContentStore(tmp_path / "content"), hosts, **kw)  # type: ignore[arg-type]
    try:
        return (await puller.pull(parse(ref), auth=auth)).config_digest
    finally:
        await puller.aclose()


async def test_basic_auth(tmp_path: Path, basic_auth_registry: AuthRegistry) -> None:
    reg = basic_auth_registry
    good = Credentials(username=USERNAME, password=PASSWORD)
    assert await pull(tmp_path, reg.hosts(), reg.ref(), good) == reg.busybox.config_digest
    encoded = Credentials(auth=base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode())
    assert await pull(tmp_path / "2", reg.hosts(), reg.ref(), encoded) == reg.busybox.config_digest
    with pytest.raises(Unauthorized):
        await pull(
            tmp_path / "3", reg.hosts(), reg.ref(), Credentials(username=USERNAME, password="x")
        )
    with pytest.raises(Unauthorized, match="requires credentials"):
        await pull(tmp_path / "4", reg.hosts(), reg.ref())


async def test_basic_auth_from_credentials_file_map(
    tmp_path: Path, basic_auth_registry: AuthRegistry
) -> None:
    reg = basic_auth_registry
    creds = {reg.host: Credentials(username=USERNAME, password=PASSWORD)}
    assert (
        await pull(tmp_path, reg.hosts(), reg.ref(), credentials=creds) == reg.busybox.config_digest
    )


async def test_bearer_token_auth(tmp_path: Path, token_registry: AuthRegistry) -> None:
    reg = token_registry
    assert reg.token is not None
    reg.token.requests.clear()
    good = Credentials(username=USERNAME, password=PASSWORD)
    assert await pull(tmp_path, reg.hosts(), reg.ref(), good) == reg.busybox.config_digest
    assert len(reg.token.requests) == 1  # one token for the manifest, config and layer
    method, path = reg.token.requests[0]
    assert method == "GET" and "scope=repository%3Alibrary%2Fbusybox%3Apull" in path
    with pytest.raises(Unauthorized, match="refused the credentials"):
        await pull(
            tmp_path / "2", reg.hosts(), reg.ref(), Credentials(username=USERNAME, password="no")
        )
    with pytest.raises(Unauthorized, match="anonymous"):
        await pull(tmp_path / "3", reg.hosts(), reg.ref())


async def test_bearer_identity_token_and_registry_token(
    tmp_path: Path, token_registry: AuthRegistry
) -> None:
    reg = token_registry
    assert reg.token is not None
    identity = Credentials(identity_token="identity-token-for-berth")
    assert await pull(tmp_path, reg.hosts(), reg.ref(), identity) == reg.busybox.config_digest
    assert reg.token.requests[-1][0] == "POST"
    # a registry token is sent as it is: one the token server issued earlier works
    token = reg.token.key.sign(reg.token._claims(USERNAME, ["repository:library/busybox:pull"]))
    reg.token.requests.clear()
    direct = Credentials(registry_token=token)
    assert await pull(tmp_path / "2", reg.hosts(), reg.ref(), direct) == reg.busybox.config_digest
    assert reg.token.requests == []


def certs_d(tmp_path: Path, host: str, text: str) -> Path:
    config = tmp_path / "certs.d"
    (config / host).mkdir(parents=True)
    (config / host / "hosts.toml").write_text(text)
    return config


async def test_tls_with_custom_ca_from_hosts_toml(
    tmp_path: Path, tls_registry: LocalRegistry, test_ca: CertAuthority
) -> None:
    reg = tls_registry
    config = certs_d(tmp_path, reg.host, f'server = "https://{reg.host}"\nca = "{test_ca.cert}"\n')
    hosts = RegistryHosts(config_path=config)
    assert await pull(tmp_path, hosts, reg.ref()) == reg.busybox.config_digest


async def test_tls_without_the_ca_fails_and_skip_verify_works(
    tmp_path: Path, tls_registry: LocalRegistry
) -> None:
    reg = tls_registry
    with pytest.raises(errors.Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await pull(tmp_path, RegistryHosts(config_path=None), reg.ref())
    config = certs_d(tmp_path, reg.host, f'server = "https://{reg.host}"\nskip_verify = true\n')
    assert await pull(tmp_path / "2", RegistryHosts(config_path=config), reg.ref())


async def test_plain_http_is_not_used_unless_configured(
    tmp_path: Path, registry: LocalRegistry
) -> None:
    with pytest.raises(errors.Unavailable, match=r"TLS failed|SSL"):
        await pull(tmp_path, RegistryHosts(config_path=None), registry.ref())


async def test_client_certificate_from_hosts_toml(
    tmp_path: Path, registry_factory: Callable[..., RegistryServer], test_ca: CertAuthority
) -> None:
    server = registry_factory(
        tls=test_ca.issue(tmp_path / "srv"), ca=test_ca.cert, client_ca=test_ca
    )
    assert server.client_cert is not None
    push_image(
        server.url, "library/busybox", "latest", busybox_image(), verify=server.ssl_context()
    )
    ref = f"{server.host}/library/busybox:latest"
    without = certs_d(
        tmp_path / "a", server.host, f'server = "{server.url}"\nca = "{test_ca.cert}"\n'
    )
    with pytest.raises(errors.Unavailable):
        await pull(tmp_path / "a", RegistryHosts(config_path=without), ref)
    cert, key = server.client_cert.cert, server.client_cert.key
    text = f'server = "{server.url}"\nca = "{test_ca.cert}"\nclient = [["{cert}", "{key}"]]\n'
    with_cert = certs_d(tmp_path / "b", server.host, text)
    assert await pull(tmp_path / "b", RegistryHosts(config_path=with_cert), ref)


async def test_mirror_fallback_first_mirror_down(tmp_path: Path, registry: LocalRegistry) -> None:
    dead = f"127.0.0.1:{free_port()}"
    hosts = RegistryHosts(
        config_path=None,
        mirrors={"registry.k8s.io": [f"http://{dead}", registry.url]},
    )
    digest = await pull(tmp_path, hosts, "registry.k8s.io/library/busybox:multi")
    assert digest == registry.busybox.config_digest


async def test_mirror_from_hosts_toml_for_an_upstream_name(
    tmp_path: Path, registry: LocalRegistry
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    text = (
        f'[host."http://{dead}"]\n  capabilities = ["pull", "resolve"]\n'
        f'[host."{registry.url}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    config = certs_d(tmp_path, "registry.k8s.io", text)
    digest = await pull(
        tmp_path, RegistryHosts(config_path=config), "registry.k8s.io/library/busybox:latest"
    )
    assert digest == registry.busybox.config_digest
