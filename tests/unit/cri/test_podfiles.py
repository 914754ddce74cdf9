from __future__ import annotations

from pathlib import Path

import pytest

from cri.podfiles import DnsConfig, render_resolv_conf, write_pod_files

HOST_RESOLV = "# host\nnameserver 192.168.1.1\nsearch lan\n"
HOST_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    resolv = tmp_path / "host-resolv.conf"
    hosts = tmp_path / "host-hosts"
    resolv.write_text(HOST_RESOLV)
    hosts.write_text(HOST_HOSTS)
    return resolv, hosts


def test_render_resolv_conf_like_containerd() -> None:
    dns = DnsConfig(
        servers=["10.96.0.10", "fd00::a"],
        searches=["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        options=["ndots:5", "edns0"],
    )
    assert render_resolv_conf(dns) == (
        "search ns.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "nameserver fd00::a\n"
        "options ndots:5 edns0\n"
    )


def test_render_only_servers() -> None:
    assert render_resolv_conf(DnsConfig(servers=["1.1.1.1"])) == "nameserver 1.1.1.1\n"


def test_write_pod_files_with_dns(tmp_path: Path, host: tuple[Path, Path]) -> None:
    resolv, hosts = host
    files = write_pod_files(
        tmp_path / "pod",
        hostname="web-0",
        dns=DnsConfig(servers=["10.96.0.10"], searches=["a", "b"], options=["ndots:5"]),
        host_resolv=resolv,
        host_hosts=hosts,
    )
    assert files.hostname_path.read_text() == "web-0\n"
    assert files.resolv_path.read_text() == "search a b\nnameserver 10.96.0.10\noptions ndots:5\n"
    assert files.hosts_path.read_text() == HOST_HOSTS
    for path in (files.hostname_path, files.resolv_path, files.hosts_path):
        assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "pod").iterdir()) == [
        "hostname",
        "hosts",
        "resolv.conf",
    ]


@pytest.mark.parametrize("dns", [None, DnsConfig()])
def test_no_dns_copies_host_resolv_conf(
    tmp_path: Path, host: tuple[Path, Path], dns: DnsConfig | None
) -> None:
    resolv, hosts = host
    files = write_pod_files(
        tmp_path / "pod", hostname="h", dns=dns, host_resolv=resolv, host_hosts=hosts
    )
    assert files.resolv_path.read_text() == HOST_RESOLV


def test_rewrite_replaces_files_and_missing_host_files_give_empty_copies(
    tmp_path: Path, host: tuple[Path, Path]
) -> None:
    resolv, hosts = host
    pod = tmp_path / "pod"
    write_pod_files(pod, hostname="old", dns=None, host_resolv=resolv, host_hosts=hosts)
    files = write_pod_files(
        pod,
        hostname="new",
        dns=None,
        host_resolv=tmp_path / "absent1",
        host_hosts=tmp_path / "absent2",
    )
    assert files.hostname_path.read_text() == "new\n"
    assert files.resolv_path.read_text() == ""
    assert files.hosts_path.read_text() == ""
    assert len(list(pod.iterdir())) == 3  # no temporary files left behind
