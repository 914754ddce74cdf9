"""The table of implemented RPCs: CRI method name -> ``async def handle(rt, request)``.

One module per RPC lives beside this file; add it here when it lands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cri.server import runtime_config, status, version

HANDLERS: dict[str, Callable[..., Any]] = {
    "Version": version.handle,
    "Status": status.handle,
    "RuntimeConfig": runtime_config.handle,
}
