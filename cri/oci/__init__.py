"""OCI runtime spec generation: a pure function from CRI + image config to config.json."""

from __future__ import annotations

from cri.oci.devices import DeviceNode, DeviceProbe, HostDeviceProbe
from cri.oci.host import detect_host
from cri.oci.inputs import HostInfo, PodFilePaths, Rlimit, SpecInputs
from cri.oci.spec import build_spec
from cri.oci.user import ProcessUser, resolve_process_user

__all__ = [
    "DeviceNode",
    "DeviceProbe",
    "HostDeviceProbe",
    "HostInfo",
    "PodFilePaths",
    "ProcessUser",
    "Rlimit",
    "SpecInputs",
    "build_spec",
    "detect_host",
    "resolve_process_user",
]
