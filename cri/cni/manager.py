"""The CNI manager: attaching pods to the configured network and detaching them.

    ADD:  cache(pending) → plugin 1 … plugin n (each gets the previous result) → cache(result)
          any plugin fails → DEL of the whole chain, in reverse (frees veths and IPAM leases),
          then the error is raised; the cache goes once that DEL succeeded.
    DEL:  plugins in reverse, all with the cached ADD result as prevResult, with the *cached*
          configuration (so a config change or a berthd restart in between does not matter);
          the cache goes once every plugin succeeded. No cache: the current configuration,
          best effort, never an error.

Operations on one sandbox are serialised (the spec forbids parallel calls for one container);
different sandboxes run in parallel. The configuration is re-read whenever the conf dir or a
plugin dir changes, which :meth:`CniManager.status` notices with a few stat calls.

Run DEL before removing the pod's netns: the bridge plugin finds the addresses whose
masquerade rules it must delete by looking inside the netns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from cri import errors
from cri.cni.cache import CacheEntry, ResultCache
from cri.cni.config import (
    NetworkConfList,
    PluginConf,
    Selection,
    fingerprint,
    select_network,
    version_at_least,
)
from cri.cni.invoke import IFNAME, PluginCall, PluginExecutor, SubprocessExecutor, plugin_config
from cri.cni.pod import PodNetwork, capability_args, cni_args
from cri.cni.result import CniResult, ResultInvalid, parse_result
from cri.locks import KeyedLocks

log = structlog.get_logger(__name__)

NOT_READY_REASON = "NetworkPluginNotReady"


class CniStatus(NamedTuple):
    """NetworkReady condition: (ready, reason, message), as the CRI Status reports it."""

    ready: bool
    reason: str
    message: str


READY = CniStatus(True, "", "")


def _netns_arg(pod: PodNetwork) -> str:
    """CNI_NETNS: the pin, or "" once it is gone (plugins then clean up what they can)."""
    if pod.netns is not None and os.path.exists(pod.netns):
        return str(pod.netns)
    return ""


def _portmap_idle(network: NetworkConfList, plugin: PluginConf, cap: Mapping[str, Any]) -> bool:
    """True if ``portmap`` got no port mappings at ADD: it then creates nothing (it returns
    its prevResult untouched), so its DEL — ~100 ms of iptables execs — can be skipped."""
    if plugin.type != "portmap":
        return False
    config = plugin_config(network, plugin, prev_result=None, capability_args=cap)
    runtime = config.get("runtimeConfig")
    return not (isinstance(runtime, Mapping) and runtime.get("portMappings"))


class CniManager:
    """Attach and detach pods with the CNI plugins of the first valid config in ``conf_dir``."""

    def __init__(
        self,
        conf_dir: Path,
        plugin_dirs: Sequence[Path],
        cache_dir: Path,
        timeout: float,
        *,
        executor: PluginExecutor | None = None,
    ) -> None:
        self.conf_dir = conf_dir
        self.plugin_dirs = tuple(plugin_dirs)
        self._cache = ResultCache(cache_dir)
        self._exec = executor or SubprocessExecutor(self.plugin_dirs, timeout)
        self._locks = KeyedLocks()
        self._fingerprint: tuple[object, ...] | None = None
        self._selection = Selection(network=None, problems=())

    # -- configuration -------------------------------------------------------------------

    def _current(self) -> Selection:
        stamp = fingerprint(self.conf_dir, self.plugin_dirs)
        if stamp != self._fingerprint:
            self._selection = select_network(self.conf_dir, self.plugin_dirs)
            self._fingerprint = stamp
            self._log_selection()
        return self._selection

    def _log_selection(self) -> None:
        network = self._selection.network
        if network is not None:
            source = str(network.source)
            log.info("cni network selected", network=network.name, path=source)
        else:
            log.warning("cni network not ready", problems=list(self._selection.problems))

    def network(self) -> NetworkConfList | None:
        """The network new pods are attached to now (re-read if the files changed)."""
        return self._current().network

    def status(self) -> CniStatus:
        """NetworkReady from the configuration alone; a few stat calls when nothing changed."""
        selection = self._current()
        if selection.network is not None:
            return READY
        message = f"cni plugin not initialized: no valid network config in {self.conf_dir}"
        if selection.problems:
            message += " (" + "; ".join(selection.problems) + ")"
        return CniStatus(False, NOT_READY_REASON, message)

    async def plugin_status(self) -> CniStatus:
        """Ask every plugin of the network with the STATUS verb (CNI ≥ 1.1.0 only)."""
        network = self.network()
        if network is None:
            return self.status()
        if not version_at_least(network.cni_version, "1.1.0"):
            return READY
        for plugin in network.plugins:
            config = plugin_config(network, plugin, prev_result=None, capability_args={})
            call = PluginCall(
                command="STATUS", network=network.name, plugin=plugin.type, config=config
            )
            try:
                await self._exec(call)
            except errors.Error as exc:
                return CniStatus(False, NOT_READY_REASON, str(exc))
        return READY

    # -- pod operations ------------------------------------------------------------------

    def _call(
        self,
        command: str,
        network: NetworkConfList,
        plugin: PluginConf,
        pod: PodNetwork,
        *,
        prev: Mapping[str, Any] | None,
        cap: Mapping[str, Any],
    ) -> PluginCall:
        return PluginCall(
            command=command,
            network=network.name,
            plugin=plugin.type,
            config=plugin_config(network, plugin, prev_result=prev, capability_args=cap),
            container_id=pod.id,
            netns=_netns_arg(pod),
            ifname=IFNAME,
            cni_args=cni_args(pod),
        )

    async def _write_cache(self, entry: CacheEntry) -> None:
        await asyncio.to_thread(self._cache.write, entry)

    async def add(self, pod: PodNetwork) -> CniResult:
        """Attach ``pod`` (its netns must exist); returns the parsed result, pod IPs first.

        Raises Unavailable when there is no valid network or a plugin fails, DeadlineExceeded
        when a plugin times out, InvalidArgument for bad bandwidth annotations, AlreadyExists if
        the pod is attached already (the spec forbids a second ADD without DEL). On any failure
        the chain has been deleted again (best effort) before the error is raised. A plugin
        that prints nothing passes the previous result on.
        """
        network = self.network()
        if network is None:
            raise errors.Unavailable(f"cannot attach pod {pod.id}: {self.status().message}")
        if not _netns_arg(pod):
            raise errors.FailedPrecondition(f"network namespace of pod {pod.id} does not exist")
        cap = capability_args(pod)
        async with self._locks.hold(pod.id):
            existing = await asyncio.to_thread(self._cache.read, pod.id)
            if existing is not None and existing.result is not None:
                raise errors.AlreadyExists(f"pod {pod.id} is attached to a network already")
            entry = CacheEntry(
                container_id=pod.id,
                network=network,
                capability_args=cap,
                cni_args=cni_args(pod),
                netns=str(pod.netns or ""),
            )
            await self._write_cache(entry)
            result = await self._add_chain(entry, pod)
        log.info("pod network attached", pod_id=pod.id, network=network.name, ips=result.ips)
        return result

    async def _add_chain(self, entry: CacheEntry, pod: PodNetwork) -> CniResult:
        result: Mapping[str, Any] | None = None
        try:
            for plugin in entry.network.plugins:
                call = self._call(
                    "ADD", entry.network, plugin, pod, prev=result, cap=entry.capability_args
                )
                result = await self._exec(call) or result
            if result is None:
                raise errors.Unavailable(
                    f"cni network {entry.network.name} returned no result for pod {pod.id}"
                )
            parsed = parse_result(result)
            await self._write_cache(dataclasses.replace(entry, result=result))
        except ResultInvalid as exc:
            await self._rollback(entry, pod, result)
            raise errors.Unavailable(
                f"cni network {entry.network.name} returned an invalid result for pod "
                f"{pod.id}: {exc}"
            ) from None
        except BaseException:
            await self._rollback(entry, pod, result)
            raise
        return parsed

    async def _rollback(
        self, entry: CacheEntry, pod: PodNetwork, partial: Mapping[str, Any] | None
    ) -> None:
        """DEL the whole chain after a failed ADD; keep the cache if that fails too."""
        try:
            await self._del_chain(entry.network, pod, partial, entry.capability_args)
        except errors.Error as exc:
            log.warning("cni rollback failed", pod_id=pod.id, error=str(exc))
            await self._write_cache(dataclasses.replace(entry, result=partial))
            return
        await asyncio.to_thread(self._cache.remove, pod.id)

    async def _del_chain(
        self,
        network: NetworkConfList,
        pod: PodNetwork,
        prev: Mapping[str, Any] | None,
        cap: Mapping[str, Any] | None,
    ) -> None:
        """DEL every plugin in reverse; all run even if one fails, the first error is raised.

        ``cap`` is None when the arguments of the ADD are unknown (no cache).
        """
        if not version_at_least(network.cni_version, "0.4.0"):
            prev = None  # prevResult on DEL came with 0.4.0
        first: errors.Error | None = None
        for plugin in reversed(network.plugins):
            if cap is not None and _portmap_idle(network, plugin, cap):
                continue
            call = self._call("DEL", network, plugin, pod, prev=prev, cap=cap or {})
            try:
                await self._exec(call)
            except errors.Error as exc:
                if first is not None:
                    log.warning("cni plugin delete failed", pod_id=pod.id, error=str(exc))
                first = first or exc
        if first is not None:
            raise first

    async def delete(self, pod: PodNetwork) -> None:
        """Detach ``pod``; idempotent. A missing netns is fine (CNI_NETNS is then empty).

        With a cache entry, plugin errors are raised (and the entry kept for a retry). Without
        one, the current configuration's DEL runs best effort and never raises. Cost: with no
        entry a full DEL chain still runs, so callers should not repeat it needlessly.
        """
        async with self._locks.hold(pod.id):
            entry = await asyncio.to_thread(self._cache.read, pod.id)
            if entry is not None:
                await self._delete_entry(entry, pod)
            else:
                await self._delete_uncached(pod)

    async def delete_cached(self, sandbox_id: str) -> None:
        """Detach a sandbox known only from its cache entry (restart recovery of a pod the
        store never recorded); the pod's names come from the cached CNI_ARGS. Without an
        entry there is nothing to undo. Plugin errors are raised, the entry kept."""
        async with self._locks.hold(sandbox_id):
            entry = await asyncio.to_thread(self._cache.read, sandbox_id)
            if entry is not None:
                await self._delete_entry(entry, _pod_from_cache(entry))

    async def _delete_entry(self, entry: CacheEntry, pod: PodNetwork) -> None:
        await self._del_chain(entry.network, pod, entry.result, entry.capability_args)
        await asyncio.to_thread(self._cache.remove, pod.id)
        log.info("pod network detached", pod_id=pod.id, network=entry.network.name)

    async def _delete_uncached(self, pod: PodNetwork) -> None:
        network = self.network()
        if network is None:
            log.info("pod network detach skipped", pod_id=pod.id, reason="no cache, no config")
            return
        try:
            await self._del_chain(network, pod, None, None)
        except errors.Error as exc:
            log.warning("pod network detach incomplete", pod_id=pod.id, error=str(exc))

    async def check(self, pod: PodNetwork) -> None:
        """CHECK the pod's attachment against its cached ADD result.

        Raises FailedPrecondition if the pod was never attached, Unavailable (or
        DeadlineExceeded) when a plugin reports a problem. A no-op for networks with
        ``disableCheck`` or a cniVersion before 0.4.0.
        """
        async with self._locks.hold(pod.id):
            entry = await asyncio.to_thread(self._cache.read, pod.id)
            if entry is None or entry.result is None:
                raise errors.FailedPrecondition(f"pod {pod.id} has no network attachment")
            network = entry.network
            if network.disable_check or not version_at_least(network.cni_version, "0.4.0"):
                return
            for plugin in network.plugins:
                cap = entry.capability_args
                await self._exec(
                    self._call("CHECK", network, plugin, pod, prev=entry.result, cap=cap)
                )

    def cached_result(self, sandbox_id: str) -> CniResult | None:
        """The pod's last ADD result from the cache (e.g. its IPs after a restart), or None."""
        entry = self._cache.read(sandbox_id)
        if entry is None or entry.result is None:
            return None
        try:
            return parse_result(entry.result)
        except ResultInvalid:
            return None

    def remove_partial_writes(self) -> list[str]:
        """At start-up: drop cache files a crash cut short mid-write."""
        return self._cache.remove_partial_writes()

    def cached_ids(self) -> list[str]:
        """Sandboxes with a cache entry: attached, or half-attached before a crash."""
        return self._cache.ids()


def _pod_from_cache(entry: CacheEntry) -> PodNetwork:
    args = dict(pair.split("=", 1) for pair in entry.cni_args.split(";") if "=" in pair)
    return PodNetwork(
        id=entry.container_id,
        name=args.get("K8S_POD_NAME", ""),
        namespace=args.get("K8S_POD_NAMESPACE", ""),
        uid=args.get("K8S_POD_UID", ""),
        netns=Path(entry.netns) if entry.netns else None,
    )
