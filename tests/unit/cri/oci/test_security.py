"""Capabilities, masked/read-only paths, AppArmor and the privileged check."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import security
from cri.oci.security import ALL_CAPABILITIES, DEFAULT_CAPABILITIES

Profile = api_pb2.SecurityProfile


def _sc(add: list[str] | None = None, drop: list[str] | None = None, **kw: Any) -> Any:
    caps = api_pb2.Capability(add_capabilities=add or [], drop_capabilities=drop or [])
    return api_pb2.LinuxContainerSecurityContext(capabilities=caps, **kw)


def _caps(sc: Any, host: tuple[str, ...] = ALL_CAPABILITIES) -> set[str]:
    result = security.effective_capabilities(sc, host)
    assert result == sorted(result, key=security.CAP_NUMBER.__getitem__)
    return set(result)


DEFAULTS = set(DEFAULT_CAPABILITIES)


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], DEFAULTS),
        (["NET_ADMIN"], [], DEFAULTS | {"CAP_NET_ADMIN"}),
        (["cap_net_admin", "sys_time"], [], DEFAULTS | {"CAP_NET_ADMIN", "CAP_SYS_TIME"}),
        ([], ["NET_RAW"], DEFAULTS - {"CAP_NET_RAW"}),
        # Add ALL, then the individual drop still applies.
        (["ALL"], ["CHOWN"], set(ALL_CAPABILITIES) - {"CAP_CHOWN"}),
        # Drop ALL, then the individual add still applies.
        (["NET_BIND_SERVICE"], ["all"], {"CAP_NET_BIND_SERVICE"}),
        ([], ["ALL"], set()),
        (["ALL"], [], set(ALL_CAPABILITIES)),
        # Both ALL: drop wins (applied second), then adds.
        (["ALL", "KILL"], ["ALL"], {"CAP_KILL"}),
        # Adding and dropping the same one: the drop wins.
        (["SYS_ADMIN"], ["SYS_ADMIN"], DEFAULTS),
    ],
)
def test_capability_rules(add: list[str], drop: list[str], expected: set[str]) -> None:
    assert _caps(_sc(add, drop)) == expected


def test_all_means_what_the_host_allows() -> None:
    host = tuple(c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")
    assert _caps(_sc(["ALL"])) - _caps(_sc(["ALL"]), host) == {"CAP_SYS_RESOURCE"}


def test_capability_the_host_lacks_is_dropped_with_a_warning() -> None:
    host = tuple(c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")
    with capture_logs() as logs:
        caps = _caps(_sc(["SYS_RESOURCE", "NET_ADMIN"]), host)
    assert "CAP_SYS_RESOURCE" not in caps and "CAP_NET_ADMIN" in caps
    assert logs[0]["dropped"] == ["CAP_SYS_RESOURCE"]


def test_privileged_gets_every_host_capability() -> None:
    host = ("CAP_CHOWN", "CAP_SYS_ADMIN")
    assert _caps(_sc(drop=["ALL"], privileged=True), host) == set(host)


@pytest.mark.parametrize("name", ["NOT_A_CAP", "CAP_", "NET ADMIN"])
def test_unknown_capability_is_invalid_argument(name: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="unknown capability"):
        security.effective_capabilities(_sc([name]), ALL_CAPABILITIES)


def test_capabilities_section_leaves_inheritable_and_ambient_empty() -> None:
    section = security.capabilities_section(["CAP_KILL"])
    assert section == {
        "bounding": ["CAP_KILL"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"],
        "inheritable": [],
        "ambient": [],
    }


def test_capability_masks_round_trip() -> None:
    # 0x1fffeffffff: everything up to CAP_CHECKPOINT_RESTORE but CAP_SYS_RESOURCE (bit 24).
    caps = security.capabilities_from_mask(0x1FFFEFFFFFF)
    assert len(caps) == 40 and "CAP_SYS_RESOURCE" not in caps
    assert security.capability_mask(caps) == 0x1FFFEFFFFFF
    assert security.capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB


def test_masked_paths_as_given() -> None:
    sc = _sc(masked_paths=["/bin/ls"], readonly_paths=["/tmp"])
    assert security.masked_and_readonly_paths(sc, userns=False) == (["/bin/ls"], ["/tmp"])


def test_masked_paths_default_when_not_given() -> None:
    masked, readonly = security.masked_and_readonly_paths(_sc(), userns=False)
    assert "/proc/kcore" in masked and "/sys/firmware" in masked
    assert readonly == list(security.DEFAULT_READONLY_PATHS)


def test_unmasked_proc_in_user_namespace() -> None:
    assert security.masked_and_readonly_paths(_sc(), userns=True) == ([], [])


def test_privileged_has_no_masked_paths() -> None:
    sc = _sc(masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"], privileged=True)
    assert security.masked_and_readonly_paths(sc, userns=False) == ([], [])


def test_privileged_container_needs_privileged_pod() -> None:
    security.check_privileged(_sc(privileged=True), sandbox_privileged=True)
    security.check_privileged(_sc(), sandbox_privileged=False)
    with pytest.raises(errors.InvalidArgument, match="privileged"):
        security.check_privileged(_sc(privileged=True), sandbox_privileged=False)


@pytest.mark.parametrize(
    ("kw", "enabled", "expected"),
    [
        ({}, False, None),
        ({"apparmor": Profile(profile_type=Profile.Unconfined)}, False, None),
        ({}, True, "berth-default"),
        ({"apparmor": Profile(profile_type=Profile.RuntimeDefault)}, True, "berth-default"),
        ({"apparmor": Profile(profile_type=Profile.Unconfined)}, True, None),
        ({"apparmor": Profile(profile_type=Profile.Localhost, localhost_ref="mine")}, True, "mine"),
        ({"apparmor_profile": "localhost/legacy"}, True, "legacy"),
        ({"apparmor_profile": "runtime/default"}, True, "berth-default"),
        ({"privileged": True}, True, None),
        (
            {
                "privileged": True,
                "apparmor": Profile(profile_type=Profile.Localhost, localhost_ref="p"),
            },
            True,
            "p",
        ),
    ],
)
def test_apparmor(kw: dict[str, Any], enabled: bool, expected: str | None) -> None:
    sc = api_pb2.LinuxContainerSecurityContext(**kw)
    got = security.apparmor_profile(sc, enabled=enabled, default_profile="berth-default")
    assert got == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"apparmor": Profile(profile_type=Profile.RuntimeDefault)},
        {"apparmor_profile": "localhost/x"},
    ],
)
def test_apparmor_requested_but_disabled(kw: dict[str, Any]) -> None:
    sc = api_pb2.LinuxContainerSecurityContext(**kw)
    with pytest.raises(errors.InvalidArgument, match="not enabled"):
        security.apparmor_profile(sc, enabled=False, default_profile="d")


def test_legacy_profile_strings() -> None:
    assert security.legacy_profile("") is None
    assert security.legacy_profile("docker/default") == Profile(profile_type=Profile.RuntimeDefault)
    assert security.legacy_profile("unconfined") == Profile(profile_type=Profile.Unconfined)
    with pytest.raises(errors.InvalidArgument):
        security.legacy_profile("/abs/path")
