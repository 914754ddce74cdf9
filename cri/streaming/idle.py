"""Idle timeout for upgraded connections: any frame in or out counts as activity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class IdleTimer:
    """Calls `on_idle` once no `touch()` happened for `timeout` seconds.

    Run `run()` as a task for the connection's lifetime; it returns after firing.
    """

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self._timeout = timeout
        self._on_idle = on_idle
        self._last = time.monotonic()

    def touch(self) -> None:
        self._last = time.monotonic()

    async def run(self) -> None:
        # A deadline that moves with every touch(): sleeping until it is the timer.
        while (remaining := self._last + self._timeout - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        self._on_idle()
