"""berthd's preflight: what it refuses before creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri import config, daemon


def _config(tmp_path: Path, driver: str) -> config.Config:
    return config.load(
        None,
        {
            "root": str(tmp_path / "root"),
            "state": str(tmp_path / "state"),
            "socket": str(tmp_path / "state" / "berth.sock"),
            "cgroup_driver": driver,
        },
    )


def test_the_systemd_driver_needs_systemd(tmp_path: Path) -> None:
    with pytest.raises(daemon.StartupError, match='use cgroup_driver = "cgroupfs"'):
        daemon.preflight(_config(tmp_path, "systemd"), systemd_dir=tmp_path / "no-systemd")
    assert not (tmp_path / "root").exists() and not (tmp_path / "state").exists()


def test_the_systemd_driver_where_systemd_runs(tmp_path: Path) -> None:
    (tmp_path / "systemd").mkdir()
    daemon.preflight(_config(tmp_path, "systemd"), systemd_dir=tmp_path / "systemd")


def test_the_cgroupfs_driver_does_not_ask_for_systemd(tmp_path: Path) -> None:
    daemon.preflight(_config(tmp_path, "cgroupfs"), systemd_dir=tmp_path / "no-systemd")
