"""One pod's CRI metrics: network at pod level, cAdvisor families per running container.

Called by the collector with its lock held (it uses the collector's cgroup and layer caches).
A group of values whose files are unreadable (a controller missing, a cgroup removed while we
read) is left out for that container; the rest is still sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from cri.api.v1 import api_pb2
from cri.stats import cadvisor, extended
from cri.stats.cgroupfs import CgroupDirs
from cri.stats.collector import RUNNING, StatsCollector
from cri.stats.extended import Value
from cri.store import ContainerRecord, SandboxRecord

log = structlog.get_logger(__name__)


async def list_pod_metrics(
    collector: StatsCollector,
    sandboxes: Sequence[SandboxRecord],
    containers: Mapping[str, Sequence[ContainerRecord]],
) -> list[api_pb2.PodSandboxMetrics]:
    """Metrics of each sandbox (``containers`` by pod id), read in one worker thread."""

    def collect(now: int) -> list[api_pb2.PodSandboxMetrics]:
        return [pod_metrics(collector, s, containers.get(s.id, ()), now) for s in sandboxes]

    return await collector.run(collect)


def pod_metrics(
    collector: StatsCollector,
    sandbox: SandboxRecord,
    containers: Sequence[ContainerRecord],
    now: int,
    *,
    proc: Path = Path("/proc"),
) -> api_pb2.PodSandboxMetrics:
    running = [c for c in containers if c.state == RUNNING]
    out = api_pb2.PodSandboxMetrics(pod_sandbox_id=sandbox.id)
    network = collector.pod_network(sandbox, running)
    if network is not None:
        values = cadvisor.network_values(network)
        out.metrics.extend(cadvisor.to_metrics(cadvisor.pod_labels(sandbox), values, now))
    for record in running:
        dirs = collector.container_dirs(record)
        if dirs is None:
            continue
        values = _container_values(collector, record, dirs, now, proc)
        labels = cadvisor.container_labels(sandbox, record)
        out.container_metrics.append(
            api_pb2.ContainerMetrics(
                container_id=record.id, metrics=cadvisor.to_metrics(labels, values, now)
            )
        )
    return out


def _container_values(
    collector: StatsCollector, record: ContainerRecord, dirs: CgroupDirs, now: int, proc: Path
) -> list[Value]:
    groups: list[Callable[[], list[Value]]] = [
        lambda: extended.cpu_values(dirs),
        lambda: extended.memory_values(dirs),
        lambda: extended.spec_values(dirs),
        lambda: extended.process_values(dirs, proc),
        lambda: extended.io_values(dirs),
        lambda: extended.pressure_values(dirs),
        lambda: _layer_values(collector, record.id),
        lambda: cadvisor.time_values(record, now),
    ]
    values: list[Value] = []
    for group in groups:
        try:
            values += group()
        except (OSError, KeyError, ValueError) as exc:
            log.debug("metric group unreadable", container_id=record.id, error=str(exc))
    return values


def _layer_values(collector: StatsCollector, container_id: str) -> list[Value]:
    layer = collector.layers.usage(container_id)
    upper = collector.layers.upper_dir(container_id)
    if layer is None or upper is None:
        return []
    return cadvisor.layer_values(layer, upper)
