"""The runc wrapper containerd is given: relative cgroupsPath, arguments passed unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.critest_support.containerd_config import write_runc_wrapper


@pytest.fixture
def fake_runc(tmp_path: Path) -> Path:
    """A 'runc' that records its arguments."""
    runc = tmp_path / "runc"
    runc.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args"}\n')
    runc.chmod(0o755)
    return runc


def bundle(tmp_path: Path, cgroups_path: str) -> Path:
    where = tmp_path / "bundle"
    where.mkdir()
    spec = {"ociVersion": "1.0.2", "linux": {"cgroupsPath": cgroups_path}}
    (where / "config.json").write_text(json.dumps(spec))
    return where


def run(wrapper: Path, *args: str) -> None:
    subprocess.run([str(wrapper), *args], check=True, timeout=30)


def cgroups_path(where: Path) -> str:
    path: str = json.loads((where / "config.json").read_text())["linux"]["cgroupsPath"]
    return path


def test_create_gets_a_relative_cgroups_path(tmp_path: Path, fake_runc: Path) -> None:
    wrapper = write_runc_wrapper(tmp_path / "wrapper", fake_runc, sys.executable)
    where = bundle(tmp_path, "/k8s.io/abc")
    args = ["--root", "/r", "--log", "/l", "--log-format", "json", "create", "--bundle"]
    run(wrapper, *args, str(where), "--pid-file", "/p", "abc")
    assert cgroups_path(where) == "k8s.io/abc"
    recorded = (tmp_path / "args").read_text().split("\n")[:-1]
    assert recorded == [*args, str(where), "--pid-file", "/p", "abc"]


def test_other_commands_leave_the_bundle_alone(tmp_path: Path, fake_runc: Path) -> None:
    wrapper = write_runc_wrapper(tmp_path / "wrapper", fake_runc, sys.executable)
    where = bundle(tmp_path, "/k8s.io/abc")
    run(wrapper, "--root", "/r", "state", "abc")
    assert cgroups_path(where) == "/k8s.io/abc"
    assert (tmp_path / "args").read_text() == "--root\n/r\nstate\nabc\n"


def test_the_bundle_defaults_to_the_working_directory(tmp_path: Path, fake_runc: Path) -> None:
    wrapper = write_runc_wrapper(tmp_path / "wrapper", fake_runc, sys.executable)
    where = bundle(tmp_path, "/test.slice/abc")
    subprocess.run([str(wrapper), "run", "abc"], cwd=where, check=True, timeout=30)
    assert cgroups_path(where) == "test.slice/abc"
