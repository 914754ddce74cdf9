"""berthd's side of the shims: spawn through the template, reconnect, and clean up dead ones.

Each container has a shim with its state directory ``<state>/shims/<id>`` (socket, pid, task
record, ``exit.json``). Clients are cached per container; a client whose shim went away is
dropped and the next ``get`` reconnects or reports the shim gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import structlog

from cri import metrics
from cri.config import Config
from shim import api, cleanup, client, errors, exitfile
from shim import state as shim_state
from shim.launcher import Launcher

log = structlog.get_logger(__name__)

TEMPLATE_DIR = "shim-template"


class ShimManager:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._root = Path(config.state) / "shims"
        self._launcher: Launcher | None = None
        self._clients: dict[str, client.ShimClient] = {}

    async def start(self) -> None:
        self._launcher = await Launcher.start(Path(self._config.state) / TEMPLATE_DIR)

    async def aclose(self) -> None:
        """Disconnect and stop the template; shims and their containers keep running."""
        for shim_client in list(self._clients.values()):
            await shim_client.close()
        self._clients.clear()
        if self._launcher is not None:
            await self._launcher.close()
            self._launcher = None

    def state_dir(self, container_id: str) -> Path:
        return self._root / container_id

    def known_ids(self) -> set[str]:
        if not self._root.is_dir():
            return set()
        return {p.name for p in self._root.iterdir() if p.is_dir()}

    async def spawn(self, container_id: str) -> client.ShimClient:
        if self._launcher is None:
            raise errors.Unavailable("shim launcher is not running")
        spec = api.ShimSpec(id=container_id, state_dir=self.state_dir(container_id))
        shim_client = await self._launcher.spawn(spec)
        self._clients[container_id] = shim_client
        metrics.SHIMS.set(len(self._clients))
        return shim_client

    async def get(self, container_id: str) -> client.ShimClient:
        """A connected client; Unavailable/NotFound when the shim is gone."""
        cached = self._clients.get(container_id)
        if cached is not None and cached.connected:
            return cached
        shim_client = await client.connect(self.state_dir(container_id))
        self._clients[container_id] = shim_client
        metrics.SHIMS.set(len(self._clients))
        return shim_client

    async def alive(self, container_id: str) -> bool:
        try:
            await self.get(container_id)
        except errors.Error:
            return False
        return True

    def exit_state(self, container_id: str) -> api.TaskState | None:
        """The exit the shim recorded on disk, if it recorded one."""
        status = exitfile.read(self.state_dir(container_id))
        return None if status is None else exitfile.to_task_state(container_id, status)

    async def destroy(self, container_id: str, handler: str | None = None) -> None:
        """Delete the task (through its shim, or by cleaning up after a dead one) and forget
        the shim's state directory. Idempotent."""
        state_dir = self.state_dir(container_id)
        try:
            shim_client = await self.get(container_id)
        except errors.Error:
            shim_client = None
        if shim_client is not None:
            with contextlib.suppress(errors.Unavailable):  # it died under us: cleaned up below
                await shim_client.delete()
            await shim_client.close()
        # A shim that deleted its task removed task.json; if it is still there, the shim died
        # first and its container, runtime state and rootfs mount are ours to clean up.
        if (state_dir / shim_state.TASK).exists():
            await asyncio.to_thread(self._cleanup_dead, container_id, handler)
        self._clients.pop(container_id, None)
        metrics.SHIMS.set(len(self._clients))
        await asyncio.to_thread(shutil.rmtree, state_dir, True)

    def _cleanup_dead(self, container_id: str, handler: str | None) -> None:
        name = handler or self._config.default_runtime
        runtime = self._config.runtimes[name]
        status = cleanup.delete(
            state_dir=self.state_dir(container_id),
            runtime=runtime.path,
            runtime_root=str(self._config.runtime_root(name)),
            id=container_id,
            options=self._config.runtime_options(name),
        )
        log.info(
            "cleaned up after dead shim", container_id=container_id, exit_code=status.exit_code
        )
