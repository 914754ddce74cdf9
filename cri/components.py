"""Start-up wiring: build every component from the config, in order, with its clean-up.

Each component is entered into the caller's ``AsyncExitStack`` so shutdown unwinds them in
reverse order, and a failure half-way closes what was already started.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Final

import structlog
from prometheus_client import start_http_server

from cri import cgroups, metrics, metrics_collector, pods, recovery, stats, userns
from cri.cni.invoke import SubprocessExecutor
from cri.cni.manager import CniManager
from cri.config import Config, parse_address
from cri.oci import detect_host
from cri.runtime import Features, HostFacts, Runtime
from cri.shims import ShimManager
from cri.store import Store
from cri.streaming import StreamingServer
from cri.streaming_backend import ShimBackend
from snapshotter.content import ContentStore
from snapshotter.images import ImageStore
from snapshotter.overlay import OverlaySnapshotter
from snapshotter.puller import Puller
from snapshotter.registry.auth import load_credentials_file
from snapshotter.registry.hosts import RegistryHosts

log = structlog.get_logger(__name__)

EXPIRY_INTERVAL: Final = 600.0  # seconds between sweeps for pull leftovers too old to resume


async def build_runtime(cfg: Config, stack: AsyncExitStack) -> Runtime:
    store = Store(Path(cfg.root) / "meta.db")
    await store.open()
    stack.push_async_callback(store.close)
    images = await asyncio.to_thread(_image_store, cfg)
    stack.callback(images.close)
    shims = ShimManager(cfg)
    await shims.start()
    stack.push_async_callback(shims.aclose)
    rt = Runtime(
        config=cfg,
        store=store,
        cni=CniManager(
            conf_dir=Path(cfg.cni.conf_dir),
            plugin_dirs=[Path(d) for d in cfg.cni.plugin_dirs],
            cache_dir=Path(cfg.state) / "cni",
            timeout=cfg.cni.timeout,
            executor=metrics_collector.TimedExecutor(
                SubprocessExecutor([Path(d) for d in cfg.cni.plugin_dirs], cfg.cni.timeout)
            ),
        ),
        images=images,
        shims=shims,
        host=await asyncio.to_thread(_host_facts),
        stats=await asyncio.to_thread(stats.for_host, cfg, images),
        features=await asyncio.to_thread(_features, cfg),
    )
    stack.callback(pods.release_pin_root, rt)
    stack.push_async_callback(rt.background.aclose)
    await recovery.recover(rt)
    rt.background.spawn("image-leftovers", _expire_image_leftovers(rt))
    await _start_streaming(rt, stack)
    _start_metrics(cfg, stack)
    _register_state_metrics(rt, stack)
    return rt


async def _expire_image_leftovers(rt: Runtime) -> None:
    """What failed or crashed pulls kept for a retry goes once it is too old to resume."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL)
        try:
            await asyncio.to_thread(rt.images.expire_leftovers)
        except Exception:
            log.exception("freeing old pull leftovers failed")


def _register_state_metrics(rt: Runtime, stack: AsyncExitStack) -> None:
    collector = metrics_collector.StateCollector(
        lambda: metrics_collector.count_states(rt.store), asyncio.get_running_loop()
    )
    metrics.REGISTRY.register(collector)
    stack.callback(metrics.REGISTRY.unregister, collector)


async def _start_streaming(rt: Runtime, stack: AsyncExitStack) -> None:
    host, port = parse_address(rt.config.streaming_address)
    server = StreamingServer(ShimBackend(rt), address=host, port=port)
    await server.start()
    stack.push_async_callback(server.stop)
    rt.streaming = server
    log.info("streaming serving", url=server.url)


def _image_store(cfg: Config) -> ImageStore:
    root = Path(cfg.root)
    content = ContentStore(root / "content")
    reg = cfg.registry
    puller = Puller(
        content,
        RegistryHosts(
            config_path=Path(reg.config_path) if reg.config_path else None,
            mirrors=reg.mirrors,
            insecure=reg.insecure,
        ),
        max_concurrent_downloads=reg.max_concurrent_downloads,
        stall_timeout=reg.stall_timeout,
        credentials=load_credentials_file(Path(reg.credentials_file))
        if reg.credentials_file
        else None,
    )
    return ImageStore(
        root / "images",
        puller=puller,
        content=content,
        snapshotter=OverlaySnapshotter(root),
        pinned=cfg.pinned_images,
    )


def _host_facts() -> HostFacts:
    v2 = cgroups.is_cgroup_v2()
    return HostFacts(
        cgroup_v2=v2,
        oom_score_adj=int(Path("/proc/self/oom_score_adj").read_text()),
        spec_host=detect_host(cgroup_v2=v2),
    )


def _features(cfg: Config) -> Features:
    """Ask the default OCI runtime what it supports (``runc features``)."""
    runtime = cfg.runtimes[cfg.default_runtime].path
    try:
        out = subprocess.run(
            [runtime, "features"], capture_output=True, timeout=10, check=True
        ).stdout
        mount_options = set(json.loads(out).get("mountOptions", []))
    except (OSError, subprocess.SubprocessError, ValueError):
        mount_options = set()
    # Pods' user namespaces need idmapped mounts where image layers, pod files and volumes
    # live (the root and state dirs; /dev/shm stands for tmpfs, the pods' shm).
    no_userns = userns.probe([Path(cfg.root), Path(cfg.state), Path("/dev/shm")])
    if no_userns:
        log.info("pods cannot have user namespaces here", reason=no_userns)
    return Features(
        recursive_read_only_mounts="rro" in mount_options,
        user_namespaces=no_userns is None,
        no_user_namespaces=no_userns or "",
        supplemental_groups_policy=True,  # cri.oci.user implements Merge and Strict
    )


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
