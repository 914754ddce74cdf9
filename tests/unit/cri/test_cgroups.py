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
