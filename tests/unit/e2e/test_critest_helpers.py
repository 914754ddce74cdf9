"""The pure parts of e2e/critest: ldd parsing, subnets, mount ordering, /proc parsing, CLI."""

from __future__ import annotations

import ipaddress
import random
import tomllib
from pathlib import Path

import pytest

from e2e.critest_support import cli, containerd_config, mounts, network, procs, runner
from e2e.images import elf, rootfs
from tests.support.oci_builder import directory, file

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd5b3f2000)
\tlibresolv.so.2 => /lib/x86_64-linux-gnu/libresolv.so.2 (0x00007f36abe0f000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f36abc2d000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f36abef1000)
"""


def test_ldd_output_names_each_library_and_the_loader_but_not_the_vdso() -> None:
    paths = [lib.path for lib in elf.parse_ldd(LDD)]
    assert paths == [
        "lib/x86_64-linux-gnu/libresolv.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
    ]


def test_a_missing_library_is_an_error_naming_it() -> None:
    with pytest.raises(elf.LibraryError, match=r"libpcre2-8\.so\.0"):
        elf.parse_ldd("\tlibpcre2-8.so.0 => not found\n", "nginx")


def test_with_parents_adds_each_missing_directory_once_before_its_first_use() -> None:
    entries = rootfs.with_parents(
        [directory("etc"), file("etc/a"), file("usr/share/x/b"), file("usr/share/y")]
    )
    assert [e.path for e in entries] == [
        "etc",
        "etc/a",
        "usr",
        "usr/share",
        "usr/share/x",
        "usr/share/x/b",
        "usr/share/y",
    ]


ROUTES = """\
Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
br0\t0000500A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_routes_are_read_from_proc_net_route_hex() -> None:
    assert network.used_networks(ROUTES) == [
        ipaddress.IPv4Network("0.0.0.0/0"),
        ipaddress.IPv4Network("10.80.0.0/16"),
    ]


def test_the_subnet_picked_overlaps_no_route_but_the_default() -> None:
    used = network.used_networks(ROUTES)
    for seed in range(50):
        subnet = network.pick_subnet(used, random.Random(seed))
        assert subnet.prefixlen == 24
        assert not subnet.overlaps(ipaddress.IPv4Network("10.80.0.0/16"))


def test_conflist_is_a_bridge_with_portmap_and_private_leases(tmp_path: Path) -> None:
    doc = network.conflist("n", "bcrt1", "10.61.2.0/24", "10.61.2.1", tmp_path)
    bridge, portmap = doc["plugins"]
    assert bridge["bridge"] == "bcrt1"
    assert bridge["ipam"]["dataDir"] == str(tmp_path)
    assert portmap["capabilities"] == {"portMappings": True}


def test_mounts_under_a_root_come_deepest_first_and_never_outside_it() -> None:
    points = ["/", "/tmp/run", "/tmp/run/a", "/tmp/run/a/b", "/tmp/runner", "/tmp/run2/x"]
    assert mounts.under(points, [Path("/tmp/run")]) == ["/tmp/run/a/b", "/tmp/run/a", "/tmp/run"]


def test_mountinfo_escapes_are_undone() -> None:
    line = "36 35 0:31 / /tmp/a\\040b rw,relatime - tmpfs tmpfs rw\n"
    assert mounts.mount_points(line) == ["/tmp/a b"]


def test_ppid_is_read_after_the_last_parenthesis_of_the_command_name() -> None:
    assert procs.parent_of("123 (evil) name)) S 77 123 123 0 -1") == 77


def test_zombies_are_told_apart() -> None:
    assert procs.is_zombie("77 (berth-shim) Z 1 77 77 0 -1")
    assert not procs.is_zombie("77 (berth-shim) S 1 77 77 0 -1")


def test_descendants_are_listed_breadth_first_from_the_root() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1}
    assert procs.descendants(10, parents) == [11, 12, 13]


def test_containerd_config_is_valid_toml_with_the_needed_settings(tmp_path: Path) -> None:
    text = containerd_config.config_toml(
        workdir=tmp_path,
        socket=tmp_path / "c.sock",
        wrapper=tmp_path / "runc-wrapper",
        conf_dir=tmp_path / "net.d",
        certs_d=tmp_path / "certs.d",
    )
    cri = tomllib.loads(text)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["registry"]["config_path"] == str(tmp_path / "certs.d")
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == str(tmp_path / "runc-wrapper")


def test_hosts_toml_mirrors_over_plain_http() -> None:
    doc = tomllib.loads(containerd_config.hosts_toml("docker.io", "http://127.0.0.1:5000"))
    assert doc["server"] == "https://registry-1.docker.io"
    assert doc["host"]["http://127.0.0.1:5000"]["capabilities"] == ["pull", "resolve"]


def test_unknown_arguments_go_to_critest() -> None:
    args, extra = cli.parse_args(["--runtime", "both", "--", "--ginkgo.focus=Image", "-parallel=2"])
    assert args.runtime == "both"
    assert extra == ["--ginkgo.focus=Image", "-parallel=2"]


def test_critest_gets_both_endpoints_and_a_json_report(tmp_path: Path) -> None:
    argv = runner.critest_argv(Path("/x/critest"), "unix:///s.sock", tmp_path / "r.json", ["-a"])
    assert "--runtime-endpoint=unix:///s.sock" in argv
    assert "--image-endpoint=unix:///s.sock" in argv
    assert f"--ginkgo.json-report={tmp_path / 'r.json'}" in argv
    assert argv[-1] == "-a"
