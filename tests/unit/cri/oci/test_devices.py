"""CRI devices → linux.devices and device cgroup rules; the real /dev probe."""

from __future__ import annotations

import os
import stat

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import devices
from tests.unit.cri.oci.helpers import FakeDeviceProbe, node


def _dev(host: str, ctr: str = "", perms: str = "rwm") -> api_pb2.Device:
    return api_pb2.Device(host_path=host, container_path=ctr, permissions=perms)


def test_single_device_is_renamed_to_its_container_path() -> None:
    probe = FakeDeviceProbe(nodes={"/dev/fuse": [node("/dev/fuse", 10, 229)]})
    got = devices.cri_devices([_dev("/dev/fuse", "/dev/myfuse", "rw")], probe)
    assert got.devices == [
        {
            "path": "/dev/myfuse",
            "type": "c",
            "major": 10,
            "minor": 229,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        }
    ]
    assert got.rules == [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]


def test_directory_maps_each_node_below_the_container_path() -> None:
    nodes = [node("/dev/snd/controlC0", 116, 0), node("/dev/snd/by/pcm", 116, 3)]
    probe = FakeDeviceProbe(nodes={"/dev/snd": nodes})
    got = devices.cri_devices([_dev("/dev/snd", "/dev/sound")], probe)
    assert [d["path"] for d in got.devices] == ["/dev/sound/controlC0", "/dev/sound/by/pcm"]
    assert len(got.rules) == 2


def test_missing_container_path_means_same_as_host_and_empty_access_is_rwm() -> None:
    probe = FakeDeviceProbe(nodes={"/dev/sda": [node("/dev/sda", 8, 0, "b")]})
    got = devices.cri_devices([_dev("/dev/sda", perms="")], probe)
    assert got.devices[0]["path"] == "/dev/sda" and got.rules[0]["access"] == "rwm"
    assert got.rules[0]["type"] == "b"


@pytest.mark.parametrize(
    ("device", "match"),
    [
        (_dev("/dev/null", perms="rwx"), "permissions"),
        (_dev("/dev/null", "dev/x"), "not absolute"),
        (_dev("/dev/nope"), "does not exist"),
    ],
)
def test_invalid_devices(device: api_pb2.Device, match: str) -> None:
    probe = FakeDeviceProbe(nodes={"/dev/null": [node("/dev/null", 1, 3)]})
    with pytest.raises(errors.InvalidArgument, match=match):
        devices.cri_devices([device], probe)


def test_privileged_adds_host_devices_without_duplicates() -> None:
    probe = FakeDeviceProbe(
        nodes={"/dev/fuse": [node("/dev/fuse", 10, 229)]},
        host=[node("/dev/null", 1, 3), node("/dev/fuse", 10, 229)],
    )
    requested = devices.cri_devices([_dev("/dev/fuse")], probe)
    assert [d["path"] for d in devices.privileged_devices(requested, probe)] == [
        "/dev/fuse",
        "/dev/null",
    ]


def test_host_probe_reads_a_real_device_node() -> None:
    st = os.stat("/dev/null")
    (found,) = devices.HostDeviceProbe().devices_at("/dev/null")
    assert (found.type, found.major, found.minor) == (
        "c",
        os.major(st.st_rdev),
        os.minor(st.st_rdev),
    )
    assert found.file_mode == stat.S_IMODE(st.st_mode)


def test_host_probe_rejects_files_and_missing_paths(tmp_path: os.PathLike[str]) -> None:
    probe = devices.HostDeviceProbe()
    with pytest.raises(errors.InvalidArgument, match="not a device"):
        probe.devices_at("/etc/hostname")
    with pytest.raises(errors.InvalidArgument, match="does not exist"):
        probe.devices_at(f"{tmp_path}/none")


def test_host_probe_walks_a_directory_skipping_non_devices(tmp_path: os.PathLike[str]) -> None:
    root = str(tmp_path)
    os.makedirs(f"{root}/sub")
    os.makedirs(f"{root}/pts")
    os.symlink("/dev/null", f"{root}/sub/null")  # links are aliases: not followed
    open(f"{root}/plain", "w").close()
    assert devices.HostDeviceProbe(root).host_devices() == []
    assert devices.HostDeviceProbe(root).devices_at(root) == []


def test_host_devices_of_the_real_dev() -> None:
    found = {d.path: d for d in devices.HostDeviceProbe().host_devices()}
    assert "/dev/null" in found and "/dev/console" not in found
    assert not any(p.startswith("/dev/pts/") for p in found)
