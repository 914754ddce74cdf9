"""The runtime context every RPC handler receives: configuration and the live components.

Handlers are plain ``async def handle(rt, request)`` functions; everything they touch hangs
off this object, so tests can build one with fakes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cri.api.v1 import api_pb2
from cri.background import Background
from cri.config import Config
from cri.events import EventBus
from cri.locks import KeyedLocks
from cri.store import Store

if TYPE_CHECKING:
    from cri.cni.manager import CniManager
    from cri.oci.inputs import HostInfo
    from cri.shims import ShimManager
    from cri.stats import StatsCollector
    from cri.streaming import StreamingServer
    from snapshotter.images import ImageStore


class NetworkStatus(Protocol):
    """Where NetworkReady comes from (the CNI manager)."""

    def status(self) -> tuple[bool, str, str]:
        """(ready, reason, message); cheap enough to call on every Status request."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Features:
    """What this node really supports; reported to the kubelet, so never optimistic."""

    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False
    no_user_namespaces: str = ""  # why not, when not
    supplemental_groups_policy: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What berthd learned about its node at start-up."""

    cgroup_v2: bool
    oom_score_adj: int  # berthd's own: the floor when lowering is not permitted
    spec_host: HostInfo


class Runtime:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        cni: CniManager,
        images: ImageStore,
        shims: ShimManager,
        host: HostFacts,
        stats: StatsCollector,
        features: Features | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.cni = cni
        self.network: NetworkStatus = cni
        self.images = images
        self.shims = shims
        self.host = host
        self.features = features or Features()
        self.pod_cidr = ""  # from UpdateRuntimeConfig; shown in Status(verbose)
        self.locks = KeyedLocks()
        self.background = Background()
        self.stats = stats
        self.events = EventBus()
        self._streaming: StreamingServer | None = None

    @property
    def streaming(self) -> StreamingServer:
        if self._streaming is None:
            raise RuntimeError("the streaming server is not running")
        return self._streaming

    @streaming.setter
    def streaming(self, server: StreamingServer) -> None:
        self._streaming = server

    def watch(self, container_id: str) -> None:
        """Start (or keep) the task that records this container's exit."""
        from cri import containers

        self.background.spawn(f"watch-{container_id}", containers.watch(self, container_id))

    @property
    def root(self) -> Path:
        return Path(self.config.root)

    @property
    def state(self) -> Path:
        return Path(self.config.state)

    def runtime_problem(self) -> str | None:
        """Why the default OCI runtime can't run containers now, or None."""
        path = self.config.runtimes[self.config.default_runtime].path
        if not os.access(path, os.X_OK):
            return f"OCI runtime {self.config.default_runtime!r} binary {path} is not executable"
        return None

    def network_status(self) -> tuple[bool, str, str]:
        return self.network.status()

    def handler_features(self, name: str) -> api_pb2.RuntimeHandlerFeatures:
        handler = self.config.runtimes[name]
        return api_pb2.RuntimeHandlerFeatures(
            recursive_read_only_mounts=self.features.recursive_read_only_mounts,
            user_namespaces=self.features.user_namespaces and handler.user_namespaces,
        )

    def describe(self) -> dict[str, Any]:
        """The effective configuration, as ``crictl info`` shows it."""
        described = self.config.to_dict()
        # Keys other CRI tools look for under these names (containerd's shape).
        described["rootDir"] = self.config.root
        described["stateDir"] = self.config.state
        described["podCIDR"] = self.pod_cidr
        return described
