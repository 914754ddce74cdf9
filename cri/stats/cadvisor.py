"""The CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics) under cAdvisor's names.

The kubelet (1.33-1.35) turns each descriptor into a Prometheus family with exactly the
descriptor's label keys and each Metric's ``label_values`` in that order, so every value
sent must carry one label value per key. The keys are containerd's: ``pod``, ``namespace``,
``container``, ``id``, ``image``, then the family's own (``interface``, ``device``, ...).
Pod-level values (network) use container ``POD`` and the sandbox id, as cAdvisor labelled the
pod's infra container.

A descriptor is listed only if berth sends values for it on this host (the pressure families
need cgroup v2's PSI files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cri.api.v1 import api_pb2
from cri.netstat import InterfaceStats
from cri.stats.disk import LayerUsage
from cri.stats.extended import Value, device_name
from cri.store import ContainerRecord, SandboxRecord

BASE_LABELS = ("pod", "namespace", "container", "id", "image")
POD_CONTAINER = "POD"
NS = 1_000_000_000

COUNTER, GAUGE = api_pb2.COUNTER, api_pb2.GAUGE


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    type: api_pb2.MetricType.ValueType
    labels: tuple[str, ...] = ()  # beyond BASE_LABELS


def _families(
    kind: api_pb2.MetricType.ValueType, labels: tuple[str, ...], *pairs: tuple[str, str]
) -> list[Family]:
    return [Family(name, help_, kind, labels) for name, help_ in pairs]


_C = "container_"
FAMILIES: list[Family] = [
    *_families(
        COUNTER,
        (),
        (_C + "cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds."),
        (_C + "cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds."),
        (_C + "cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds."),
        (_C + "cpu_cfs_periods_total", "Number of elapsed enforcement period intervals."),
        (_C + "cpu_cfs_throttled_periods_total", "Number of throttled period intervals."),
        (
            _C + "cpu_cfs_throttled_seconds_total",
            "Total time duration the container has been throttled.",
        ),
        (_C + "memory_failcnt", "Number of memory usage hits limits."),
        (_C + "oom_events_total", "Count of out of memory events observed for the container."),
    ),
    *_families(
        GAUGE,
        (),
        (_C + "memory_cache", "Number of bytes of page cache memory."),
        (_C + "memory_rss", "Size of RSS in bytes."),
        (_C + "memory_kernel_usage", "Size of kernel memory allocated in bytes."),
        (_C + "memory_mapped_file", "Size of memory mapped files in bytes."),
        (_C + "memory_swap", "Container swap usage in bytes."),
        (
            _C + "memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was"
            " accessed.",
        ),
        (_C + "memory_max_usage_bytes", "Maximum memory usage recorded in bytes."),
        (_C + "memory_working_set_bytes", "Current working set in bytes."),
        (_C + "memory_total_active_file_bytes", "Current total active file in bytes."),
        (_C + "memory_total_inactive_file_bytes", "Current total inactive file in bytes."),
        (_C + "processes", "Number of processes running inside the container."),
        (_C + "threads", "Number of threads running inside the container."),
        (
            _C + "threads_max",
            "Maximum number of threads allowed inside the container, infinity if value is zero.",
        ),
        (_C + "file_descriptors", "Number of open file descriptors for the container."),
        (_C + "sockets", "Number of open sockets for the container."),
        (_C + "last_seen", "Last time a container was seen by the exporter."),
        (_C + "start_time_seconds", "Start time of the container since unix epoch in seconds."),
        (_C + "spec_cpu_period", "CPU period of the container."),
        (_C + "spec_cpu_quota", "CPU quota of the container."),
        (_C + "spec_cpu_shares", "CPU share of the container."),
        (_C + "spec_memory_limit_bytes", "Memory limit for the container in bytes; 0 means none."),
        (_C + "spec_memory_reservation_limit_bytes", "Memory reservation limit for the container."),
        (
            _C + "spec_memory_swap_limit_bytes",
            "Memory and swap limit for the container; 0 means none.",
        ),
    ),
    Family(
        _C + "memory_failures_total",
        "Cumulative count of memory allocation failures.",
        COUNTER,
        ("failure_type", "scope"),
    ),
    *_families(
        COUNTER,
        ("interface",),
        (_C + "network_receive_bytes_total", "Cumulative count of bytes received."),
        (_C + "network_receive_packets_total", "Cumulative count of packets received."),
        (
            _C + "network_receive_packets_dropped_total",
            "Cumulative count of packets dropped while receiving.",
        ),
        (
            _C + "network_receive_errors_total",
            "Cumulative count of errors encountered while receiving.",
        ),
        (_C + "network_transmit_bytes_total", "Cumulative count of bytes transmitted."),
        (_C + "network_transmit_packets_total", "Cumulative count of packets transmitted."),
        (
            _C + "network_transmit_packets_dropped_total",
            "Cumulative count of packets dropped while transmitting.",
        ),
        (
            _C + "network_transmit_errors_total",
            "Cumulative count of errors encountered while transmitting.",
        ),
    ),
    *_families(
        GAUGE,
        ("device",),
        (_C + "fs_usage_bytes", "Bytes used by the container's writable layer."),
        (_C + "fs_limit_bytes", "Size of the filesystem holding the writable layer in bytes."),
        (_C + "fs_inodes_total", "Total number of inodes of that filesystem."),
        (_C + "fs_inodes_free", "Number of free inodes of that filesystem."),
    ),
    *_families(
        COUNTER,
        ("device",),
        (_C + "fs_reads_bytes_total", "Cumulative count of bytes read."),
        (_C + "fs_reads_total", "Cumulative count of reads completed."),
        (_C + "fs_writes_bytes_total", "Cumulative count of bytes written."),
        (_C + "fs_writes_total", "Cumulative count of writes completed."),
    ),
    Family(
        _C + "blkio_device_usage_total",
        "Blkio device bytes usage.",
        COUNTER,
        ("device", "major", "minor", "operation"),
    ),
]

PRESSURE_FAMILIES: list[Family] = [
    Family(
        f"{_C}pressure_{res}_{kind}_seconds_total",
        f"Total time duration tasks in the container {what} due to {res.upper()} congestion.",
        COUNTER,
    )
    for res in ("cpu", "memory", "io")
    for kind, what in (("stalled", "could make no progress"), ("waiting", "have waited"))
]

BY_NAME: dict[str, Family] = {f.name: f for f in (*FAMILIES, *PRESSURE_FAMILIES)}


def families(*, pressure: bool) -> list[Family]:
    return [*FAMILIES, *PRESSURE_FAMILIES] if pressure else list(FAMILIES)


def descriptors(*, pressure: bool) -> list[api_pb2.MetricDescriptor]:
    return [
        api_pb2.MetricDescriptor(name=f.name, help=f.help, label_keys=[*BASE_LABELS, *f.labels])
        for f in families(pressure=pressure)
    ]


def container_labels(sandbox: SandboxRecord, record: ContainerRecord) -> tuple[str, ...]:
    meta = sandbox.config.metadata
    return (meta.name, meta.namespace, record.config.metadata.name, record.id, record.image_name)


def pod_labels(sandbox: SandboxRecord) -> tuple[str, ...]:
    meta = sandbox.config.metadata
    return (meta.name, meta.namespace, POD_CONTAINER, sandbox.id, "")


def to_metrics(base: tuple[str, ...], values: Iterable[Value], at: int) -> list[api_pb2.Metric]:
    """CRI Metrics; a value of a family this module does not describe is a bug (KeyError)."""
    out = []
    for v in values:
        family = BY_NAME[v.family]
        if len(v.labels) != len(family.labels):
            raise ValueError(f"{v.family}: {len(v.labels)} extra label values for {family.labels}")
        metric = api_pb2.Metric(
            name=v.family,
            timestamp=at,
            metric_type=family.type,
            label_values=[*base, *v.labels],
        )
        metric.value.value = v.value
        out.append(metric)
    return out


def network_values(interfaces: Mapping[str, InterfaceStats]) -> list[Value]:
    values: list[Value] = []
    for name in sorted(interfaces):
        if name == "lo":
            continue
        i = interfaces[name]
        pairs = (
            ("receive_bytes", i.rx_bytes),
            ("receive_packets", i.rx_packets),
            ("receive_packets_dropped", i.rx_dropped),
            ("receive_errors", i.rx_errors),
            ("transmit_bytes", i.tx_bytes),
            ("transmit_packets", i.tx_packets),
            ("transmit_packets_dropped", i.tx_dropped),
            ("transmit_errors", i.tx_errors),
        )
        values += [Value(f"{_C}network_{k}_total", (name,), v) for k, v in pairs]
    return values


def layer_values(
    layer: LayerUsage, upper: Path, sys_dev_block: Path = Path("/sys/dev/block")
) -> list[Value]:
    """The writable layer's usage against the filesystem that holds it."""
    fs = os.statvfs(upper)
    dev = os.stat(upper).st_dev
    device = device_name(sys_dev_block, str(os.major(dev)), str(os.minor(dev)))
    if ":" in device:  # not a block device (overlay, tmpfs): name it by its mount point
        device = layer.mountpoint
    return [
        Value(f"{_C}fs_usage_bytes", (device,), layer.used_bytes),
        Value(f"{_C}fs_limit_bytes", (device,), fs.f_blocks * fs.f_frsize),
        Value(f"{_C}fs_inodes_total", (device,), fs.f_files),
        Value(f"{_C}fs_inodes_free", (device,), fs.f_ffree),
    ]


def time_values(record: ContainerRecord, now: int) -> list[Value]:
    return [
        Value(f"{_C}last_seen", (), now // NS),
        Value(f"{_C}start_time_seconds", (), record.started_at // NS),
    ]
