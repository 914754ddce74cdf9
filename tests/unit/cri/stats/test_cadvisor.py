from __future__ import annotations

import pytest

from cri.api.v1 import api_pb2
from cri.netstat import InterfaceStats
from cri.stats import cadvisor
from cri.stats.extended import Value

# What critest (pkg/validate/pod.go, after v1.35) requires, minus what it lists as not yet
# implemented by every runtime.
CRITEST_REQUIRED = {
    "container_blkio_device_usage_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_file_descriptors",
    "container_fs_inodes_free",
    "container_fs_inodes_total",
    "container_fs_limit_bytes",
    "container_fs_reads_bytes_total",
    "container_fs_reads_total",
    "container_fs_usage_bytes",
    "container_fs_writes_bytes_total",
    "container_fs_writes_total",
    "container_last_seen",
    "container_memory_cache",
    "container_memory_failcnt",
    "container_memory_failures_total",
    "container_memory_kernel_usage",
    "container_memory_mapped_file",
    "container_memory_max_usage_bytes",
    "container_memory_rss",
    "container_memory_swap",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_receive_packets_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
    "container_network_transmit_packets_total",
    "container_oom_events_total",
    "container_processes",
    "container_sockets",
    "container_spec_cpu_period",
    "container_spec_cpu_shares",
    "container_spec_memory_limit_bytes",
    "container_spec_memory_swap_limit_bytes",
    "container_start_time_seconds",
    "container_threads",
    "container_threads_max",
}


@pytest.mark.parametrize("pressure", [False, True])
def test_descriptors_cover_what_critest_expects(pressure: bool) -> None:
    descriptors = cadvisor.descriptors(pressure=pressure)
    names = [d.name for d in descriptors]
    assert len(names) == len(set(names))
    assert set(names) >= CRITEST_REQUIRED
    for d in descriptors:
        assert d.help and list(d.label_keys[:5]) == list(cadvisor.BASE_LABELS)
    assert any("pressure" in n for n in names) == pressure


def test_to_metrics_carries_type_labels_and_value() -> None:
    [metric] = cadvisor.to_metrics(
        ("pod", "ns", "c", "id", "img"), [Value("container_memory_rss", (), 42)], at=7
    )
    assert metric.name == "container_memory_rss"
    assert metric.metric_type == api_pb2.GAUGE
    assert list(metric.label_values) == ["pod", "ns", "c", "id", "img"]
    assert (metric.timestamp, metric.value.value) == (7, 42)


def test_to_metrics_rejects_wrong_label_count() -> None:
    with pytest.raises(ValueError):
        cadvisor.to_metrics(("a",) * 5, [Value("container_network_receive_bytes_total", (), 1)], 1)


def test_network_values_skip_loopback() -> None:
    eth0 = InterfaceStats(
        name="eth0",
        rx_bytes=1,
        rx_packets=2,
        rx_errors=3,
        rx_dropped=4,
        tx_bytes=5,
        tx_packets=6,
        tx_errors=7,
        tx_dropped=8,
    )
    lo = InterfaceStats(
        name="lo",
        rx_bytes=9,
        rx_packets=9,
        rx_errors=0,
        rx_dropped=0,
        tx_bytes=9,
        tx_packets=9,
        tx_errors=0,
        tx_dropped=0,
    )
    values = cadvisor.network_values({"eth0": eth0, "lo": lo})
    got = {v.family: (v.labels, v.value) for v in values}
    assert len(values) == 8
    assert got["container_network_receive_bytes_total"] == (("eth0",), 1)
    assert got["container_network_transmit_packets_dropped_total"] == (("eth0",), 8)
