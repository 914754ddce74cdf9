"""Shared pytest set-up: markers that need the machine, and the berthd fixture."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.berthd import Berthd

pytest_plugins = ["tests.support.fixtures_registry", "tests.support.fixtures_pods"]

_NEEDS = {
    "root": (lambda: os.geteuid() == 0, "needs root"),
    "runc": (lambda: shutil.which("runc") is not None, "runc is not installed"),
    "cni": (lambda: Path("/usr/lib/cni/bridge").exists(), "CNI plugins are not installed"),
    "registry": (
        lambda: Path("/usr/bin/docker-registry").exists(),
        "Debian's docker-registry is not installed",
    ),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (available, why) in _NEEDS.items():
        if item.get_closest_marker(marker) and not available():
            pytest.skip(why)


@pytest.fixture
def berthd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short paths: unix socket names are limited to 108 bytes.
    return Path(tmp_path_factory.mktemp("bd", numbered=True))


@pytest.fixture
def berthd(berthd_dir: Path) -> Iterator[Berthd]:
    daemon = Berthd(berthd_dir, {"cni": {"conf_dir": str(berthd_dir / "net.d")}})
    daemon.start()
    yield daemon
    code = daemon.stop()
    assert code == 0, f"berthd exited {code}:\n{daemon.logs()}"
