from __future__ import annotations

import pytest

from cri import cgroups


@pytest.mark.parametrize(
    ("root", "parent", "expected"),
    [
        ("/", "/kubepods/besteffort/podx", "/kubepods/besteffort/podx/cid"),
        ("self", "/kubepods/besteffort/podx", "kubepods/besteffort/podx/cid"),
        ("/machine", "kubepods", "/machine/kubepods/cid"),
        ("self", "", "berth/cid"),
        ("/", "", "/berth/cid"),
    ],
)
def test_cgroupfs_paths_end_in_the_container_id(root: str, parent: str, expected: str) -> None:
    path = cgroups.container_cgroups_path(
        driver="cgroupfs", cgroup_root=root, parent=parent, container_id="cid"
    )
    assert path == expected


def test_systemd_paths_use_the_pod_slice() -> None:
    path = cgroups.container_cgroups_path(
        driver="systemd",
        cgroup_root="/",
        parent="kubepods-besteffort-podx.slice",
        container_id="cid",
    )
    assert path == "kubepods-besteffort-podx.slice:berth:cid"


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        ("", "berth.slice:berth:cid"),  # no parent: berth's own slice
        (
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice",
            "kubepods-besteffort-podx.slice:berth:cid",
        ),
    ],
)
def test_systemd_paths_name_the_slice_alone(parent: str, expected: str) -> None:
    path = cgroups.container_cgroups_path(
        driver="systemd", cgroup_root="self", parent=parent, container_id="cid"
    )
    assert path == expected  # cgroup_root does not apply: systemd owns the tree


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("berth.slice", "/berth.slice"),
        (
            "kubepods-besteffort-pod1.slice",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
        ),
    ],
)
def test_slices_nest_by_their_dashes(name: str, expected: str) -> None:
    assert cgroups.slice_path(name) == expected


def test_a_systemd_container_cgroup_is_a_scope_in_the_pod_slice() -> None:
    assert (
        cgroups.systemd_scope_path("kubepods-pod1.slice", "cid")
        == "/kubepods.slice/kubepods-pod1.slice/berth-cid.scope"
    )
    assert cgroups.systemd_scope_path("", "cid") == "/berth.slice/berth-cid.scope"


@pytest.mark.parametrize(
    "parent",
    [
        "kubepods-besteffort-pod1.slice",
        "/kubepods.slice/kubepods-pod1.slice",
        "/kubepods.slice/kubepods-pod1.slice/",
        "a_b:c.slice",
    ],
)
def test_slices_are_systemd_parents(parent: str) -> None:
    assert cgroups.slice_error(parent) is None


@pytest.mark.parametrize(
    ("parent", "why"),
    [
        ("/kubepods/besteffort/pod1", "is not a systemd slice"),  # a cgroupfs path
        ("kubepods", "is not a systemd slice"),
        ("-.slice", "is not a systemd slice"),  # the root slice
        ("a--b.slice", "is not a systemd slice"),
        ("-a.slice", "is not a systemd slice"),
        ("a b.slice", "is not a systemd slice"),
        ("/other/kubepods-pod1.slice", "systemd places slice kubepods-pod1.slice at"),
    ],
)
def test_other_parents_are_not_systemd_parents(parent: str, why: str) -> None:
    problem = cgroups.slice_error(parent)
    assert problem is not None and why in problem


def test_the_systemd_driver_adds_its_runtime_flag_once() -> None:
    assert cgroups.runtime_options("cgroupfs", ("--debug",)) == ("--debug",)
    assert cgroups.runtime_options("systemd", ("--debug",)) == ("--systemd-cgroup", "--debug")
    assert cgroups.runtime_options("systemd", ("--systemd-cgroup",)) == ("--systemd-cgroup",)
