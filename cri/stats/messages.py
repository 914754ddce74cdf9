"""Samples as CRI stats messages: ContainerStats and PodSandboxStats.

A field the runtime could not measure is left unset (the CRI's UInt64Value wrappers exist so
"unknown" differs from 0); a section whose cgroup was gone is left out entirely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cri.api.v1 import api_pb2
from cri.netstat import DEFAULT_INTERFACE, InterfaceStats
from cri.stats.disk import LayerUsage
from cri.stats.readers import MemorySample
from cri.store import ContainerRecord, SandboxRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupSample:
    """What one cgroup (a container's or a pod's) used at ``at``."""

    at: int
    cpu_usage: int | None = None  # ns
    nano_cores: int | None = None
    memory: MemorySample | None = None
    processes: int | None = None


def container_attributes(record: ContainerRecord) -> api_pb2.ContainerAttributes:
    config = record.config
    return api_pb2.ContainerAttributes(
        id=record.id,
        metadata=config.metadata,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
    )


def sandbox_attributes(record: SandboxRecord) -> api_pb2.PodSandboxAttributes:
    config = record.config
    return api_pb2.PodSandboxAttributes(
        id=record.id,
        metadata=config.metadata,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
    )


def cpu_usage(sample: CgroupSample) -> api_pb2.CpuUsage | None:
    if sample.cpu_usage is None:
        return None
    cpu = api_pb2.CpuUsage(timestamp=sample.at)
    cpu.usage_core_nano_seconds.value = sample.cpu_usage
    if sample.nano_cores is not None:
        cpu.usage_nano_cores.value = sample.nano_cores
    return cpu


def memory_usage(at: int, mem: MemorySample) -> api_pb2.MemoryUsage:
    out = api_pb2.MemoryUsage(timestamp=at)
    out.working_set_bytes.value = mem.working_set
    out.usage_bytes.value = mem.usage
    out.rss_bytes.value = mem.rss
    out.page_faults.value = mem.page_faults
    out.major_page_faults.value = mem.major_page_faults
    if mem.available is not None:
        out.available_bytes.value = mem.available
    return out


def swap_usage(at: int, mem: MemorySample) -> api_pb2.SwapUsage | None:
    if mem.swap_usage is None:
        return None
    out = api_pb2.SwapUsage(timestamp=at)
    out.swap_usage_bytes.value = mem.swap_usage
    if mem.swap_available is not None:
        out.swap_available_bytes.value = mem.swap_available
    return out


def filesystem_usage(layer: LayerUsage) -> api_pb2.FilesystemUsage:
    out = api_pb2.FilesystemUsage(
        timestamp=layer.measured_at,
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=layer.mountpoint),
    )
    out.used_bytes.value = layer.used_bytes
    out.inodes_used.value = layer.inodes_used
    return out


def container_stats(
    record: ContainerRecord,
    sample: CgroupSample | None,
    layer: LayerUsage | None,
    attributes: api_pb2.ContainerAttributes | None = None,
) -> api_pb2.ContainerStats:
    """``attributes``: the record's, when the caller has them built already."""
    stats = api_pb2.ContainerStats()
    stats.attributes.CopyFrom(attributes or container_attributes(record))
    if layer is not None:
        stats.writable_layer.CopyFrom(filesystem_usage(layer))
    if sample is not None:
        _fill_cgroup(stats, sample)
    return stats


def _fill_cgroup(
    stats: api_pb2.ContainerStats | api_pb2.LinuxPodSandboxStats, s: CgroupSample
) -> None:
    cpu = cpu_usage(s)
    if cpu is not None:
        stats.cpu.CopyFrom(cpu)
    if s.memory is not None:
        stats.memory.CopyFrom(memory_usage(s.at, s.memory))
        swap = swap_usage(s.at, s.memory)
        if swap is not None and isinstance(stats, api_pb2.ContainerStats):
            stats.swap.CopyFrom(swap)


def interface_usage(iface: InterfaceStats) -> api_pb2.NetworkInterfaceUsage:
    out = api_pb2.NetworkInterfaceUsage(name=iface.name)
    out.rx_bytes.value = iface.rx_bytes
    out.rx_errors.value = iface.rx_errors
    out.tx_bytes.value = iface.tx_bytes
    out.tx_errors.value = iface.tx_errors
    return out


def network_usage(at: int, interfaces: Mapping[str, InterfaceStats]) -> api_pb2.NetworkUsage:
    """eth0 (the CNI interface) is the default; every interface but ``lo`` is listed."""
    out = api_pb2.NetworkUsage(timestamp=at)
    if DEFAULT_INTERFACE in interfaces:
        out.default_interface.CopyFrom(interface_usage(interfaces[DEFAULT_INTERFACE]))
    for name in sorted(interfaces):
        if name != "lo":
            out.interfaces.append(interface_usage(interfaces[name]))
    return out


def pod_stats(
    record: SandboxRecord,
    sample: CgroupSample | None,
    network: Mapping[str, InterfaceStats] | None,
    containers: Sequence[api_pb2.ContainerStats],
) -> api_pb2.PodSandboxStats:
    linux = api_pb2.LinuxPodSandboxStats(containers=list(containers))
    if sample is not None:
        _fill_cgroup(linux, sample)
        if sample.processes is not None:
            process = api_pb2.ProcessUsage(timestamp=sample.at)
            process.process_count.value = sample.processes
            linux.process.CopyFrom(process)
    if network is not None and sample is not None:
        linux.network.CopyFrom(network_usage(sample.at, network))
    return api_pb2.PodSandboxStats(attributes=sandbox_attributes(record), linux=linux)


def summed(at: int, samples: Iterable[CgroupSample], nano_cores: int | None) -> CgroupSample:
    """A pod's usage as the sum of its containers' (a pod that has no cgroup of its own)."""
    cpu = mem_usage = ws = rss = faults = major = procs = 0
    for s in samples:
        cpu += s.cpu_usage or 0
        procs += s.processes or 0
        if s.memory is not None:
            mem_usage += s.memory.usage
            ws += s.memory.working_set
            rss += s.memory.rss
            faults += s.memory.page_faults
            major += s.memory.major_page_faults
    memory = MemorySample(
        usage=mem_usage,
        working_set=ws,
        rss=rss,
        page_faults=faults,
        major_page_faults=major,
        limit=None,
    )
    return CgroupSample(at=at, cpu_usage=cpu, nano_cores=nano_cores, memory=memory, processes=procs)
