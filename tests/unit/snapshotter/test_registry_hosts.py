"""hosts.toml (containerd certs.d) parsing and host ordering."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.registry.hosts import ALL_CAPABILITIES, RegistryHost, RegistryHosts


def write(config: Path, domain: str, text: str) -> Path:
    d = config / domain
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    return d


def test_no_config_gives_https_upstream() -> None:
    hosts = RegistryHosts(config_path=None).hosts_for("registry.k8s.io")
    assert hosts == [RegistryHost(url="https://registry.k8s.io")]
    assert (
        hosts[0].api_url("pause", "manifests", "3.9")
        == "https://registry.k8s.io/v2/pause/manifests/3.9"
    )


def test_docker_io_upstream_is_registry_1() -> None:
    [host] = RegistryHosts(config_path=None).hosts_for("docker.io")
    assert host.url == "https://registry-1.docker.io"


def test_insecure_host_uses_http_and_keeps_port() -> None:
    [host] = RegistryHosts(config_path=None, insecure=["127.0.0.1:5000"]).hosts_for(
        "127.0.0.1:5000"
    )
    assert host.url == "http://127.0.0.1:5000"
    assert host.host == "127.0.0.1:5000"
    assert host.scheme == "http"


def test_mirrors_come_first_in_order() -> None:
    hosts = RegistryHosts(
        config_path=None,
        mirrors={
            "registry.k8s.io": ["http://127.0.0.1:5000", "mirror.example:443", "https://m/sub"]
        },
    ).hosts_for("registry.k8s.io")
    assert [(h.url, h.path_prefix) for h in hosts] == [
        ("http://127.0.0.1:5000", "/v2"),
        ("https://mirror.example:443", "/v2"),
        ("https://m", "/sub/v2"),
        ("https://registry.k8s.io", "/v2"),
    ]


def test_wildcard_mirror_applies_to_domains_without_their_own() -> None:
    hosts = RegistryHosts(config_path=None, mirrors={"*": ["http://m:1"], "a.io": ["http://a:1"]})
    assert [h.url for h in hosts.hosts_for("gcr.io")] == ["http://m:1", "https://gcr.io"]
    assert [h.url for h in hosts.hosts_for("a.io")] == ["http://a:1", "https://a.io"]


def test_hosts_toml_full(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        "registry.k8s.io",
        """
server = "https://registry.k8s.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.internal:8443/prefix"]
  capabilities = ["pull"]
  ca = "ca.pem"
  client = [["client.pem", "client.key"], "both.pem"]
  skip_verify = true
  [host."https://mirror.internal:8443/prefix".header]
    x-custom = ["a", "b"]

[host."https://exact.internal/api/v2"]
  override_path = true
  ca = ["/abs/ca1.pem", "ca2.pem"]
""",
    )
    hosts = RegistryHosts(config_path=tmp_path).hosts_for("registry.k8s.io")
    assert [h.url for h in hosts] == [
        "http://127.0.0.1:5000",
        "https://mirror.internal:8443",
        "https://exact.internal",
        "https://registry.k8s.io",
    ]
    local, mirror, exact, upstream = hosts
    assert local.capabilities == frozenset({"pull", "resolve"})
    assert mirror.capabilities == frozenset({"pull"})
    assert mirror.path_prefix == "/prefix/v2"
    assert mirror.ca_files == (d / "ca.pem",)
    assert mirror.client_certs == ((d / "client.pem", d / "client.key"), (d / "both.pem", None))
    assert mirror.skip_verify
    assert mirror.headers == (("x-custom", "a"), ("x-custom", "b"))
    assert exact.path_prefix == "/api/v2" and exact.override_path
    assert exact.ca_files == (Path("/abs/ca1.pem"), d / "ca2.pem")
    assert upstream.capabilities == ALL_CAPABILITIES and not upstream.skip_verify


def test_top_level_keys_apply_to_server(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        "127.0.0.1:5000",
        'server = "https://127.0.0.1:5000"\nca = "ca.pem"\nskip_verify = false\n',
    )
    [host] = RegistryHosts(config_path=tmp_path).hosts_for("127.0.0.1:5000")
    assert host.url == "https://127.0.0.1:5000" and host.ca_files == (d / "ca.pem",)


def test_server_without_scheme_and_insecure(tmp_path: Path) -> None:
    write(tmp_path, "r.io", 'server = "r.io:5000"\n[host."m.io:5001"]\n')
    hosts = RegistryHosts(config_path=tmp_path, insecure=["m.io:5001"]).hosts_for("r.io")
    assert [h.url for h in hosts] == ["http://m.io:5001", "https://r.io:5000"]


def test_default_directory_is_the_fallback(tmp_path: Path) -> None:
    write(tmp_path, "_default", '[host."http://127.0.0.1:5000"]\n')
    write(tmp_path, "own.io", '[host."http://127.0.0.1:6000"]\n')
    hosts = RegistryHosts(config_path=tmp_path)
    assert [h.url for h in hosts.hosts_for("gcr.io")] == ["http://127.0.0.1:5000", "https://gcr.io"]
    assert [h.url for h in hosts.hosts_for("own.io")] == ["http://127.0.0.1:6000", "https://own.io"]


def test_hosts_toml_then_config_mirrors_then_upstream_without_duplicates(tmp_path: Path) -> None:
    write(tmp_path, "r.io", '[host."http://a:1"]\n')
    hosts = RegistryHosts(config_path=tmp_path, mirrors={"r.io": ["http://b:1", "http://a:1"]})
    assert [h.url for h in hosts.hosts_for("r.io")] == ["http://a:1", "http://b:1", "https://r.io"]


def test_file_is_reread_on_each_call(tmp_path: Path) -> None:
    hosts = RegistryHosts(config_path=tmp_path)
    assert len(hosts.hosts_for("r.io")) == 1
    write(tmp_path, "r.io", '[host."http://a:1"]\n')
    assert len(hosts.hosts_for("r.io")) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server = [", "hosts file"),
        ("server = 5", "server must be a string"),
        ('[host."ftp://x"]', "must be http"),
        ('[host."http://x"]\ncapabilities = ["fly"]', "unknown capabilities"),
        ('[host."http://x"]\nskip_verify = "yes"', "true or false"),
        ('[host."http://x"]\nca = 5', "ca must be"),
        ('[host."http://x"]\nclient = [["a", "b", "c"]]', "client entry"),
        ('[host."http://x"]\nheader = "x"', "header must be a table"),
        ('host = "x"', "must be tables"),
    ],
)
def test_bad_hosts_toml(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "r.io", text)
    with pytest.raises(errors.InvalidArgument, match=message):
        RegistryHosts(config_path=tmp_path).hosts_for("r.io")
