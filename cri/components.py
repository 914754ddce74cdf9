"""Start-up wiring: build every component from the config, in order, with its clean-up.

Each component is entered into the caller's ``AsyncExitStack`` so shutdown unwinds them in
reverse order, and a failure half-way closes what was already started.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import structlog
from prometheus_client import start_http_server

from cri import metrics
from cri.cni.manager import CniManager
from cri.config import Config, parse_address
from cri.runtime import Runtime
from cri.store import Store

log = structlog.get_logger(__name__)


async def build_runtime(cfg: Config, stack: AsyncExitStack) -> Runtime:
    store = Store(Path(cfg.root) / "meta.db")
    await store.open()
    stack.push_async_callback(store.close)
    network = CniManager(
        conf_dir=Path(cfg.cni.conf_dir),
        plugin_dirs=[Path(d) for d in cfg.cni.plugin_dirs],
        cache_dir=Path(cfg.state) / "cni",
        timeout=cfg.cni.timeout,
    )
    _start_metrics(cfg, stack)
    return Runtime(config=cfg, store=store, network=network)


def _start_metrics(cfg: Config, stack: AsyncExitStack) -> None:
    if not cfg.metrics_address:
        return
    host, port = parse_address(cfg.metrics_address)
    server, thread = start_http_server(port, addr=host, registry=metrics.REGISTRY)
    log.info("metrics serving", address=f"{host}:{server.server_port}")

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    stack.callback(stop)
