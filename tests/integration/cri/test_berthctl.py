"""berthctl as an admin uses it: the offline demo pod, import, pull with progress, rm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cri.ctl.imagebuild import write_docker_archive
from tests.support.berthd import Berthd
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


def berthctl(daemon: Berthd, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "from cri.ctl.main import main; main()", "-r", str(daemon.socket)]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120)


def test_demo_runs_a_pod_offline(pod_berthd: Berthd, tmp_path: Path) -> None:
    result = berthctl(pod_berthd, "demo", "--log-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "hello from a berth container" in result.stdout
    assert "exec hostname -> berth-demo (exit 0)" in result.stdout
    assert "pod removed" in result.stdout
    images = berthctl(pod_berthd, "images")
    assert "localhost/berth/busybox:latest" in images.stdout


def test_import_then_remove(pod_berthd: Berthd, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    write_docker_archive(archive, "example.com/mine/bb:v1")
    imported = berthctl(pod_berthd, "images", "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert "example.com/mine/bb:v1" in imported.stdout
    assert "example.com/mine/bb:v1" in berthctl(pod_berthd, "images", "list").stdout
    removed = berthctl(pod_berthd, "images", "rm", "example.com/mine/bb:v1")
    assert removed.returncode == 0, removed.stderr
    assert "example.com/mine/bb:v1" not in berthctl(pod_berthd, "images").stdout


def test_pull_shows_progress(pod_berthd: Berthd, registry: LocalRegistry) -> None:
    ref = registry.ref("library/busybox:multi")
    result = berthctl(pod_berthd, "images", "pull", ref)
    assert result.returncode == 0, result.stderr
    assert "Image is up to date for sha256:" in result.stdout


def test_errors_are_one_line(pod_berthd: Berthd, tmp_path: Path) -> None:
    result = berthctl(pod_berthd, "images", "import", str(tmp_path / "missing.tar"))
    assert result.returncode == 1
    assert result.stderr.startswith("berthctl: images: NOT_FOUND:")
