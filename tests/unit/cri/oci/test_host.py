"""Parsing the host facts (cri.oci.host)."""

from __future__ import annotations

from cri.oci import host
from cri.oci.security import ALL_CAPABILITIES


def test_bounding_capabilities_from_status() -> None:
    status = "Name:\tberthd\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"
    caps = host.bounding_capabilities(status)
    assert "CAP_SYS_RESOURCE" not in caps and "CAP_CHECKPOINT_RESTORE" in caps
    assert host.bounding_capabilities("") == ALL_CAPABILITIES


def test_kernel_version() -> None:
    assert host.kernel_version("6.1.0-18-amd64") == (6, 1)
    assert host.kernel_version("5.15.0") == (5, 15)
    assert host.kernel_version("weird") == (0, 0)


def test_detect_host_reads_this_machine() -> None:
    info = host.detect_host(cgroup_v2=False)
    assert info.machine and info.hostname and info.kernel >= (3, 0)
    assert info.capabilities and set(info.capabilities) <= set(ALL_CAPABILITIES)
