"""Pod namespaces, sysctls and /dev/shm against the real kernel (root)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri import errors, netns, podfiles, sysctl

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def pins_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("pins")
    yield root
    netns.unmount(root)  # the private self-bind create_namespaces made
    assert not _mounted_under(root)


@pytest.fixture
def pin_dir(pins_root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    directory = pins_root / request.node.name
    yield directory
    netns.remove_namespaces(directory / kind for kind in ("net", "ipc", "uts"))


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo]


def _mounted_under(root: Path) -> list[str]:
    return [m for m in _mount_points() if m.startswith(str(root) + "/")]


def _nsenter(pins: dict[str, Path], *argv: str) -> str:
    flags = [f"--{kind}={path}" for kind, path in pins.items()]
    done = subprocess.run(["nsenter", *flags, *argv], capture_output=True, text=True, check=True)
    return done.stdout


def test_pins_hold_new_namespaces_until_removed(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["uts", "net", "ipc"])
    assert list(pins) == ["net", "ipc", "uts"]
    for kind, path in pins.items():
        ours = os.stat(f"/proc/self/ns/{kind}")
        pinned = os.stat(path)
        assert pinned.st_dev == ours.st_dev  # an nsfs inode …
        assert pinned.st_ino != ours.st_ino  # … of a namespace that is not ours
        assert str(path) in _mount_points()
        assert netns.is_pinned(path)
    netns.remove_namespaces(pins.values())
    assert _mounted_under(pin_dir) == []
    assert not any(path.exists() for path in pins.values())
    netns.remove_namespaces(pins.values())  # idempotent


def test_hostname_and_loopback(pin_dir: Path) -> None:
    host_name = os.uname().nodename
    pins = netns.create_namespaces(pin_dir, ["net", "uts"], hostname="pod-a")
    assert _nsenter({"uts": pins["uts"]}, "hostname").strip() == "pod-a"
    netns.set_hostname(pins["uts"], "pod-b")
    assert _nsenter({"uts": pins["uts"]}, "hostname").strip() == "pod-b"
    assert os.uname().nodename == host_name
    link = _nsenter({"net": pins["net"]}, "ip", "-o", "link", "show", "lo")
    assert "<LOOPBACK,UP,LOWER_UP>" in link
    with pytest.raises(errors.InvalidArgument):
        netns.set_hostname(pins["uts"], "x" * 65)


def test_loopback_can_stay_down(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["net"], loopback_up=False)
    assert "UP" not in _nsenter(pins, "ip", "-o", "link", "show", "lo").split(">")[0]
    netns.set_loopback_up(pins["net"])
    assert ",UP" in _nsenter(pins, "ip", "-o", "link", "show", "lo")


def test_failure_half_way_leaves_nothing(pin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_mount = netns.mount

    def failing_mount(source: object, target: object, *args: object) -> None:
        if str(target).endswith("/ipc"):
            raise OSError(1, "injected failure")
        real_mount(source, target, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(netns, "mount", failing_mount)
    with pytest.raises(OSError, match="injected"):
        netns.create_namespaces(pin_dir, ["net", "ipc", "uts"])
    assert _mounted_under(pin_dir) == []
    assert sorted(os.listdir(pin_dir)) == []


def test_existing_pin_is_refused_and_left_alone(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["uts"])
    with pytest.raises(errors.AlreadyExists, match="uts"):
        netns.create_namespaces(pin_dir, ["net", "ipc", "uts"])
    assert netns.is_pinned(pins["uts"])
    assert sorted(os.listdir(pin_dir)) == ["uts"]


def test_socket_made_in_the_netns_lives_there(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["net"])
    server = netns.run_in_netns(pins["net"], lambda: socket.create_server(("127.0.0.1", 0)))
    with server:
        port = server.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):  # not on the host's loopback
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        dial = netns.run_in_netns(
            pins["net"], lambda: socket.create_connection(("127.0.0.1", port), timeout=2)
        )
        with dial, server.accept()[0] as accepted:
            dial.sendall(b"ping")
            assert accepted.recv(4) == b"ping"


def _read_host(name: str) -> str:
    return sysctl.proc_path(name).read_text().strip()


def test_sysctls_land_in_the_pod_namespaces_only(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["net", "ipc"])
    wanted = {
        "net.ipv4.ip_dynaddr": "1",
        "net/ipv4/ping_group_range": "0 2147483647",
        "kernel.msgmax": "12345",
        "kernel.shm_rmid_forced": "1",
        "fs.mqueue.msg_max": "100",
    }
    dotted = [sysctl.normalize(name) for name in wanted]
    host_before = {name: _read_host(name) for name in dotted}
    sysctl.validate_sysctls(wanted, host_network=False, host_ipc=False)
    sysctl.apply_sysctls(pins, wanted)
    paths = [str(sysctl.proc_path(name)) for name in dotted]
    inside = _nsenter(pins, "cat", *paths).splitlines()
    assert [" ".join(v.split()) for v in inside] == list(wanted.values())
    assert {name: _read_host(name) for name in dotted} == host_before


def test_sysctl_failures_name_the_key(pin_dir: Path) -> None:
    pins = netns.create_namespaces(pin_dir, ["net", "ipc"])
    with pytest.raises(errors.InvalidArgument, match=r"net.ipv4.no_such_knob.*does not exist"):
        sysctl.apply_sysctls(pins, {"net.ipv4.no_such_knob": "1"})
    with pytest.raises(errors.InvalidArgument, match=r"kernel.msgmax.*'many'"):
        sysctl.apply_sysctls(pins, {"kernel.msgmax": "many"})


def test_shm_is_a_private_tmpfs(tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    podfiles.mount_shm(shm)
    try:
        podfiles.mount_shm(shm)  # idempotent: no second mount on top
        with open("/proc/self/mountinfo") as mountinfo:
            entries = [line.split() for line in mountinfo if line.split()[4] == str(shm)]
        [entry] = entries
        options = set(entry[5].split(","))
        assert {"nosuid", "nodev", "noexec"} <= options
        assert entry[entry.index("-") + 1] == "tmpfs"
        assert not any(tag.startswith(("shared", "master")) for tag in entry[6:-4])
        assert stat.S_IMODE(os.stat(shm).st_mode) == 0o1777
        vfs = os.statvfs(shm)
        assert vfs.f_blocks * vfs.f_frsize == podfiles.SHM_SIZE
    finally:
        podfiles.unmount_shm(shm)
    assert str(shm) not in _mount_points()
    podfiles.unmount_shm(shm)  # idempotent
