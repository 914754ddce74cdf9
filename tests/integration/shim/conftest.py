"""Fixtures for the shim's integration tests: real runc, real mounts, as root."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shim import api, client, errors, launcher, state
from tests.integration.shim import bundle


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("runc") is None or not bundle.BUSYBOX.exists():
        pytest.skip("needs runc and busybox-static")


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _skip_unless_possible()
    yield bundle.make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")
    bundle.remove_test_cgroups()


class Env:
    """Creates bundles and shims for one test and removes all of it afterwards."""

    def __init__(self, base: Path, rootfs: Path, launcher: launcher.Launcher) -> None:
        self.base = base
        self.rootfs = rootfs
        self.launcher = launcher
        self.runtime_root = base / "runc"
        self.clients: list[client.ShimClient] = []
        self.state_dirs: list[tuple[str, Path]] = []

    def new_id(self) -> str:
        return f"t{uuid.uuid4().hex[:12]}"

    async def spawn(self, cid: str | None = None) -> client.ShimClient:
        cid = cid or self.new_id()
        state_dir = self.base / f"s-{cid}"
        self.state_dirs.append((cid, state_dir))
        c = await self.launcher.spawn(api.ShimSpec(id=cid, state_dir=state_dir))
        self.clients.append(c)
        return c

    def params(self, cid: str, args: list[str], **kw: Any) -> api.CreateParams:
        """Bundle for `args` and the create parameters (log in <base>/<cid>.log)."""
        spec_kw = {k: kw.pop(k) for k in ("memory_limit", "env", "pid_ns") if k in kw}
        spec = bundle.config(cid, args, tty=kw.get("tty", False), **spec_kw)
        b = bundle.write_bundle(self.base / f"b-{cid}", spec)
        return api.CreateParams(
            bundle=str(b),
            runtime_root=str(self.runtime_root),
            rootfs_mounts=(
                api.Mount(type="bind", source=str(self.rootfs), options=("rbind", "ro")),
            ),
            log_path=kw.pop("log_path", str(self.base / f"{cid}.log")),
            **kw,
        )

    async def running(
        self, args: list[str], **kw: Any
    ) -> tuple[client.ShimClient, api.CreateParams]:
        c = await self.spawn()
        p = self.params(c.id, args, **kw)
        await c.create(p)
        await c.start()
        return c, p

    async def cleanup(self) -> None:
        for cid, state_dir in self.state_dirs:
            with contextlib.suppress(errors.Error):
                c = await client.connect(state_dir)
                await c.delete()
            pid = state.read_pid(state_dir)
            if pid is not None and state.pid_alive(pid):
                os.kill(pid, 9)
            _force_delete(self.runtime_root, cid)
            rootfs = self.base / f"b-{cid}" / "rootfs"
            assert not bundle.is_mounted(rootfs), f"{rootfs} still mounted"
        for c in self.clients:
            await c.close()


def _force_delete(root: Path, cid: str) -> None:
    if (root / cid).exists():
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], check=False)
        shutil.rmtree(root / cid, ignore_errors=True)


@pytest.fixture
async def env(tmp_path: Path, rootfs: Path) -> AsyncIterator[Env]:
    lau = await launcher.Launcher.start(tmp_path / "tpl")
    e = Env(tmp_path, rootfs, lau)
    try:
        yield e
    finally:
        await e.cleanup()
        await lau.close()
