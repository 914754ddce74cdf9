from __future__ import annotations

import tomllib
from pathlib import Path

from e2e.bench import containerd_config as cc
from tests.support.berthd import write_config


def rendered(tmp_path: Path) -> dict[str, object]:
    layout = cc.ContainerdLayout(base=tmp_path / "ctrd")
    path = write_config(tmp_path / "config.toml", cc.config(layout, sandbox_image="r/pause:1"))
    return tomllib.loads(path.read_text())


def test_config_keeps_containerd_inside_its_own_dirs(tmp_path: Path) -> None:
    doc = rendered(tmp_path)
    base = str(tmp_path / "ctrd")
    assert doc["version"] == 2
    assert doc["root"] == f"{base}/root" and doc["state"] == f"{base}/state"
    assert doc["grpc"] == {"address": f"{base}/containerd.sock"}
    assert "io.containerd.internal.v1.opt" in doc["disabled_plugins"]  # type: ignore[operator]


def test_cri_plugin_settings(tmp_path: Path) -> None:
    cri = rendered(tmp_path)["plugins"][cc.CRI]  # type: ignore[index]
    base = tmp_path / "ctrd"
    assert cri["sandbox_image"] == "r/pause:1"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["systemd_cgroup"] is False
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": f"{base}/net.d", "max_conf_num": 1}
    assert cri["registry"] == {"config_path": f"{base}/certs.d"}
    options = cri["containerd"]["runtimes"]["runc"]["options"]
    assert options["BinaryName"] == f"{base}/runc-relative-cgroups"
    assert options["SystemdCgroup"] is False
    assert options["Root"] == f"{base}/state/runc"


def test_hosts_toml_is_plain_http() -> None:
    doc = tomllib.loads(cc.hosts_toml("127.0.0.1:5000"))
    assert doc["server"] == "http://127.0.0.1:5000"
    assert doc["host"]["http://127.0.0.1:5000"]["capabilities"] == ["pull", "resolve"]


def test_runc_wrapper_rewrites_only_with_a_bundle_and_execs_runc() -> None:
    script = cc.runc_wrapper("/usr/sbin/runc")
    assert script.startswith("#!/bin/sh\n")
    assert 'exec /usr/sbin/runc "$@"' in script
    assert "--bundle|-b) bundle=$arg" in script
    assert """s#"cgroupsPath": *"/*#"cgroupsPath":"#""" in script
