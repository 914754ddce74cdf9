"""Which hosts serve a registry domain: containerd's `certs.d/<host>/hosts.toml` format.

For a domain we try, in order: the `[host."…"]` entries of its hosts.toml
(file order), the mirrors from the daemon config, then the upstream (the
hosts.toml `server`, else `https://<domain>`; docker.io is served by
registry-1.docker.io). A domain without its own directory uses
`<config_path>/_default/hosts.toml` if there is one.

hosts.toml keys honoured (top level for the upstream, per `[host."url"]`):
`capabilities` (pull/resolve/push), `ca` (path or list; relative to the
hosts.toml directory), `client` (path, or a list of paths and [cert, key] pairs),
`skip_verify`, `override_path`, `header`.

Plain http is used only for a URL written with `http://` (in hosts.toml or the
mirror list) or for a host listed as insecure; everything else is https.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from snapshotter import errors

ALL_CAPABILITIES: Final = frozenset({"pull", "resolve", "push"})
DOCKER_UPSTREAM: Final = "https://registry-1.docker.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryHost:
    """One endpoint of a registry: where to send API requests and how to trust it."""

    url: str  # scheme://host[:port]
    path_prefix: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    skip_verify: bool = False
    ca_files: tuple[Path, ...] = ()
    client_certs: tuple[tuple[Path, Path | None], ...] = ()
    override_path: bool = False
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def host(self) -> str:
        """host[:port], as credentials are keyed."""
        return urlsplit(self.url).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    def api_url(self, repository: str, kind: str, obj: str) -> str:
        """URL of `<prefix>/<repository>/<kind>/<obj>`, e.g. kind "manifests" or "blobs"."""
        return f"{self.url}{self.path_prefix}/{repository}/{kind}/{obj}"


class RegistryHosts:
    """Resolves a registry domain to its ordered list of hosts (see the module docstring)."""

    def __init__(
        self,
        *,
        config_path: Path | None,
        mirrors: Mapping[str, Sequence[str]] | None = None,
        insecure: Collection[str] = (),
    ) -> None:
        self._config_path = config_path
        self._mirrors = dict(mirrors or {})
        self._insecure = frozenset(h.lower() for h in insecure)

    def hosts_for(self, domain: str) -> list[RegistryHost]:
        """Hosts to try for `domain`, mirrors first. Raises InvalidArgument for a bad hosts.toml.

        The file is read on each call, so edits apply to the next pull.
        """
        config, base_dir = self._load(domain)
        hosts = [
            _host_from_table(self._with_scheme(url), table, base_dir)
            for url, table in _host_tables(config).items()
        ]
        for url in self._mirrors.get(domain, self._mirrors.get("*", ())):
            hosts.append(_host_from_table(self._with_scheme(url), {}, base_dir))
        server = config.get("server", self._default_upstream(domain))
        if not isinstance(server, str):
            raise errors.InvalidArgument(f"hosts.toml for {domain}: server must be a string")
        hosts.append(_host_from_table(self._with_scheme(server), config, base_dir))
        return _unique(hosts)

    def _default_upstream(self, domain: str) -> str:
        if domain == "docker.io":
            return DOCKER_UPSTREAM
        return domain

    def _with_scheme(self, url: str) -> str:
        if "://" in url:
            return url
        host = url.split("/", 1)[0].lower()
        return f"{'http' if host in self._insecure else 'https'}://{url}"

    def _load(self, domain: str) -> tuple[dict[str, Any], Path]:
        if self._config_path is None or "/" in domain or domain.startswith("."):
            return {}, Path("/")
        for name in (domain, "_default"):
            path = self._config_path / name / "hosts.toml"
            if path.is_file():
                return _read_toml(path), path.parent
        return {}, Path("/")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise errors.InvalidArgument(f"registry hosts file {path}: {exc}") from None


def _host_tables(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    tables = config.get("host", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise errors.InvalidArgument("hosts.toml: [host] entries must be tables")
    return tables


def _host_from_table(url: str, table: Mapping[str, Any], base_dir: Path) -> RegistryHost:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidArgument(f"registry host {url!r} must be http(s)://host[:port][/path]")
    override = _bool(table, "override_path")
    path = parts.path.rstrip("/")
    if not override:
        path = f"{path}/v2"
    return RegistryHost(
        url=f"{parts.scheme}://{parts.netloc}",
        path_prefix=path,
        capabilities=_capabilities(table),
        skip_verify=_bool(table, "skip_verify"),
        ca_files=tuple(base_dir / p for p in _str_list(table.get("ca"), "ca")),
        client_certs=_client_certs(table.get("client"), base_dir),
        override_path=override,
        headers=_headers(table.get("header")),
    )


def _bool(table: Mapping[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise errors.InvalidArgument(f"hosts.toml: {key} must be true or false")
    return value


def _str_list(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise errors.InvalidArgument(f"hosts.toml: {key} must be a string or a list of strings")


def _capabilities(table: Mapping[str, Any]) -> frozenset[str]:
    if "capabilities" not in table:
        return ALL_CAPABILITIES
    caps = frozenset(_str_list(table["capabilities"], "capabilities"))
    if not caps <= ALL_CAPABILITIES:
        raise errors.InvalidArgument(f"hosts.toml: unknown capabilities {sorted(caps)}")
    return caps


def _client_certs(value: object, base_dir: Path) -> tuple[tuple[Path, Path | None], ...]:
    """`client` is "cert", or a list whose items are "cert" or ["cert", "key"] (as containerd).

    A lone "cert" file holds the key too.
    """
    items = [value] if isinstance(value, str) else value
    if value is None:
        return ()
    if not isinstance(items, list):
        raise errors.InvalidArgument("hosts.toml: client must be a path or a list of paths/pairs")
    return tuple(_client_pair(item, base_dir) for item in items)


def _client_pair(item: object, base_dir: Path) -> tuple[Path, Path | None]:
    if isinstance(item, str):
        return base_dir / item, None
    if isinstance(item, list) and 1 <= len(item) <= 2 and all(isinstance(p, str) for p in item):
        return base_dir / item[0], (base_dir / item[1] if len(item) == 2 else None)
    raise errors.InvalidArgument(f"hosts.toml: client entry {item!r} is not a path or a pair")


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise errors.InvalidArgument("hosts.toml: header must be a table")
    return tuple((k, v) for k, vs in value.items() for v in _str_list(vs, f"header {k}"))


def _unique(hosts: list[RegistryHost]) -> list[RegistryHost]:
    seen: set[tuple[str, str]] = set()
    out = []
    for host in hosts:
        if (host.url, host.path_prefix) not in seen:
            seen.add((host.url, host.path_prefix))
            out.append(host)
    return out
