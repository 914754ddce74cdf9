"""cri.userns: which pods get a user namespace, and the checks before any mount is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri import errors, userns
from cri.api.v1 import api_pb2
from tests.support.cri_configs import sandbox_config

MAPPING = [api_pb2.IDMapping(container_id=0, host_id=100000, length=65536)]


def _pod(**options: object) -> api_pb2.PodSandboxConfig:
    config = sandbox_config("p")
    config.linux.security_context.namespace_options.CopyFrom(
        api_pb2.NamespaceOption(**options)  # type: ignore[arg-type]
    )
    return config


def test_a_pod_without_options_or_in_mode_node_has_the_hosts() -> None:
    assert userns.pod_idmap(_pod()) is None
    node = api_pb2.UserNamespace(mode=api_pb2.NODE)
    assert userns.pod_idmap(_pod(userns_options=node)) is None


def test_mode_pod_gives_the_mapping_and_the_oci_form() -> None:
    pod = api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
    idmap = userns.pod_idmap(_pod(userns_options=pod))
    assert idmap == userns.IdMap(uid=(0, 100000, 65536), gid=(0, 100000, 65536))
    assert idmap.root == (100000, 100000)
    assert idmap.oci() == {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    }


@pytest.mark.parametrize("kind", ["network", "pid", "ipc"])
def test_host_namespaces_beside_a_user_namespace_are_refused(kind: str) -> None:
    pod = api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
    with pytest.raises(errors.InvalidArgument, match=f"host's {kind}"):
        userns.pod_idmap(_pod(userns_options=pod, **{kind: api_pb2.NODE}))


def test_a_privileged_pod_cannot_have_a_user_namespace() -> None:
    pod = api_pb2.UserNamespace(mode=api_pb2.POD, uids=MAPPING, gids=MAPPING)
    config = _pod(userns_options=pod)
    config.linux.security_context.privileged = True
    with pytest.raises(errors.InvalidArgument, match="privileged"):
        userns.pod_idmap(config)


def test_the_bundle_must_be_reachable_by_the_pods_root(tmp_path: Path) -> None:
    idmap = userns.IdMap(uid=(0, 100000, 65536), gid=(0, 100000, 65536))
    closed = tmp_path / "closed"
    (closed / "bundle").mkdir(parents=True)
    for directory in tmp_path.parents:  # pytest's base dirs are 0700
        if not directory.stat().st_mode & 0o001:
            directory.chmod(directory.stat().st_mode | 0o001)
    tmp_path.chmod(0o755)
    closed.chmod(0o700)
    with pytest.raises(errors.FailedPrecondition, match=f"{closed} is mode 0700"):
        userns.check_reachable(closed / "bundle" / "idmap", idmap)
    closed.chmod(0o711)
    userns.check_reachable(closed / "bundle" / "idmap", idmap)


def test_which_spec_mounts_are_seen_through_idmapped_clones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloned: list[tuple[str, Path, bool]] = []
    monkeypatch.setattr(
        userns,
        "idmapped_clone",
        lambda source, target, fd, *, recursive: cloned.append((source, target, recursive)),
    )
    volumes = tmp_path / "volumes"
    spec = {
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/pod/hosts"},
            {"destination": "/data", "source": "/srv/data", "options": ["rbind", "rw"]},
            {"destination": "/img", "type": "bind", "source": f"{volumes}/0/etc"},
            {"destination": "/dev/shm", "type": "bind", "source": "/pod/shm", "options": ["bind"]},
        ]
    }
    out = userns.idmap_spec_mounts(spec, tmp_path / "idmap", 3, mapped=volumes)
    assert cloned == [
        ("/pod/hosts", tmp_path / "idmap" / "m2", False),
        ("/srv/data", tmp_path / "idmap" / "m3", True),
        ("/pod/shm", tmp_path / "idmap" / "m5", False),
    ]
    sources = [m["source"] for m in out["mounts"]]
    assert sources == [
        "proc",
        "/sys",
        str(tmp_path / "idmap" / "m2"),
        str(tmp_path / "idmap" / "m3"),
        f"{volumes}/0/etc",  # an image volume: mounted from idmapped layers already
        str(tmp_path / "idmap" / "m5"),
    ]
    assert spec["mounts"][2]["source"] == "/pod/hosts"  # the input is left as it was
