from __future__ import annotations

from pathlib import Path

import pytest

from cri.api.v1 import api_pb2
from cri.stats import cadvisor, podmetrics
from cri.stats.cgroupfs import CgroupLayout
from cri.stats.collector import StatsCollector, configured_pod_dirs
from cri.stats.disk import WritableLayers
from cri.store import ContainerRecord, SandboxRecord
from tests.unit.cri.stats.cgroup_fixtures import V1Host

S = 1_000_000_000
NOW = 1_700_000_000 * S
NET_DEV = (
    "Inter-|   Receive   |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop"
    " fifo colls carrier compressed\n"
    "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
    "  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n"
)


def sandbox(sid: str, parent: str = "/kubepods/pod1", *, net: bool = True) -> SandboxRecord:
    return SandboxRecord(
        id=sid,
        config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=f"pod-{sid}", namespace="ns", uid="u"),
            labels={"app": "x"},
        ),
        runtime_handler="runc",
        created_at=NOW - 100 * S,
        cgroup_parent=parent,
        namespaces={"net": "/nonexistent/pin"} if net else {},
    )


def container(
    cid: str, sid: str, pid: int, state: int = api_pb2.CONTAINER_RUNNING
) -> ContainerRecord:
    return ContainerRecord(
        id=cid,
        sandbox_id=sid,
        config=api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=f"name-{cid}"),
            labels={"l": cid},
            annotations={"a": "b"},
        ),
        image_id="sha256:abc",
        image_ref="sha256:abc",
        image_name="busybox",
        created_at=NOW - 20 * S,
        runtime_handler="runc",
        state=state,
        pid=pid,
        started_at=NOW - 10 * S,
    )


class Env:
    def __init__(self, tmp: Path) -> None:
        self.host = V1Host(tmp / "cg")
        self.proc = tmp / "proc"
        self.upper = tmp / "upper"
        self.now = NOW
        layout = CgroupLayout.from_text(self.host.mountinfo, v2_controllers=False)
        self.collector = StatsCollector(
            layout=layout,
            layers=WritableLayers(lambda cid: self.upper / cid, clock=lambda: self.now),
            pod_dirs=configured_pod_dirs(
                layout, cgroup_root="/", driver="cgroupfs", self_dirs=layout.at("/")
            ),
            proc=self.proc,
            clock=lambda: self.now,
        )

    def run(self, record: ContainerRecord, path: str, *, cpu_ns: int, pids: int = 1) -> None:
        self.host.cgroup(path, cpu_ns=cpu_ns, pids=pids)
        d = self.proc / str(record.pid)
        (d / "net").mkdir(parents=True)
        (d / "cgroup").write_text(self.host.proc_cgroup(path))
        (d / "net" / "dev").write_text(NET_DEV)
        (self.upper / record.id).mkdir(parents=True)
        (self.upper / record.id / "file").write_text("x")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


async def test_container_stats_of_a_running_container(env: Env) -> None:
    c1 = container("c1", "p1", pid=101)
    env.run(c1, "/kubepods/pod1/c1", cpu_ns=5 * S)
    [stats] = await env.collector.containers([c1])
    assert stats.attributes.id == "c1" and stats.attributes.metadata.name == "name-c1"
    assert dict(stats.attributes.labels) == {"l": "c1"}
    assert stats.cpu.timestamp == NOW and stats.cpu.usage_core_nano_seconds.value == 5 * S
    assert stats.cpu.usage_nano_cores.value == S // 2  # 5 s of CPU in the 10 s since start
    assert stats.memory.working_set_bytes.value == 2_000_000
    assert not stats.memory.HasField("available_bytes")  # no limit
    assert stats.swap.swap_usage_bytes.value == 4096
    assert stats.writable_layer.inodes_used.value == 2
    assert stats.writable_layer.used_bytes.value > 0


async def test_nano_cores_over_the_interval_since_the_previous_sample(env: Env) -> None:
    c1 = container("c1", "p1", pid=101)
    env.run(c1, "/kubepods/pod1/c1", cpu_ns=5 * S)
    await env.collector.containers([c1])
    env.now += 10 * S
    (env.host.root / "cpuacct/kubepods/pod1/c1/cpuacct.usage").write_text(str(7 * S))
    [stats] = await env.collector.containers([c1])
    assert stats.cpu.usage_nano_cores.value == S // 5  # 2 s in 10 s


async def test_created_container_has_no_cgroup_sections(env: Env) -> None:
    c1 = container("c1", "p1", pid=0, state=api_pb2.CONTAINER_CREATED)
    [stats] = await env.collector.containers([c1])
    assert stats.attributes.id == "c1"
    assert not stats.HasField("cpu") and not stats.HasField("memory")


async def test_exited_process_is_reported_without_cgroup_sections(env: Env) -> None:
    c1 = container("c1", "p1", pid=999)  # no /proc/999
    [stats] = await env.collector.containers([c1])
    assert not stats.HasField("cpu")


async def test_pod_with_its_own_cgroup(env: Env) -> None:
    p1 = sandbox("p1")
    c1, c2 = container("c1", "p1", pid=101), container("c2", "p1", pid=102)
    env.run(c1, "/kubepods/pod1/c1", cpu_ns=2 * S)
    env.run(c2, "/kubepods/pod1/c2", cpu_ns=3 * S)
    env.host.cgroup("/kubepods/pod1", cpu_ns=9 * S, pids=6)
    [stats] = await env.collector.pods([p1], {"p1": [c1, c2]})
    assert stats.attributes.id == "p1" and stats.attributes.metadata.name == "pod-p1"
    linux = stats.linux
    assert linux.cpu.usage_core_nano_seconds.value == 9 * S  # the pod cgroup, not the sum
    assert linux.process.process_count.value == 6
    assert linux.network.default_interface.name == "eth0"
    assert linux.network.default_interface.rx_bytes.value == 5000
    assert linux.network.default_interface.tx_errors.value == 3
    assert [i.name for i in linux.network.interfaces] == ["eth0"]
    assert sorted(c.attributes.id for c in linux.containers) == ["c1", "c2"]


async def test_pods_sharing_a_parent_are_the_sum_of_their_containers(env: Env) -> None:
    p1, p2 = sandbox("p1", parent="/berth"), sandbox("p2", parent="/berth")
    c1, c2 = container("c1", "p1", pid=101), container("c2", "p1", pid=102)
    env.run(c1, "/berth/c1", cpu_ns=2 * S, pids=2)
    env.run(c2, "/berth/c2", cpu_ns=3 * S, pids=3)
    [stats, _] = await env.collector.pods(
        [p1, p2], {"p1": [c1, c2]}, shared_parents=frozenset({"/berth"})
    )
    assert stats.linux.cpu.usage_core_nano_seconds.value == 5 * S
    assert stats.linux.process.process_count.value == 5
    assert stats.linux.memory.working_set_bytes.value == 4_000_000


async def test_pod_without_a_cgroup_parent_and_without_containers(env: Env) -> None:
    [stats] = await env.collector.pods([sandbox("p1", parent="", net=False)], {})
    assert stats.linux.cpu.usage_core_nano_seconds.value == 0
    assert not stats.linux.HasField("network")  # no net namespace: host network


async def test_idle_pod_with_own_parent_reads_the_configured_cgroup(env: Env) -> None:
    env.host.cgroup("/kubepods/pod1", cpu_ns=4 * S, pids=0)
    [stats] = await env.collector.pods([sandbox("p1", net=False)], {})
    assert stats.linux.cpu.usage_core_nano_seconds.value == 4 * S


async def test_pod_metrics_labels_match_descriptors(env: Env) -> None:
    p1 = sandbox("p1")
    c1 = container("c1", "p1", pid=101)
    env.run(c1, "/kubepods/pod1/c1", cpu_ns=2 * S)
    [pm] = await podmetrics.list_pod_metrics(env.collector, [p1], {"p1": [c1]})
    assert pm.pod_sandbox_id == "p1"
    keys = {d.name: len(d.label_keys) for d in cadvisor.descriptors(pressure=False)}
    pod_level = {m.name for m in pm.metrics}
    assert "container_network_receive_bytes_total" in pod_level
    for m in pm.metrics:
        assert list(m.label_values[:5]) == ["pod-p1", "ns", "POD", "p1", ""]
    [cm] = pm.container_metrics
    assert cm.container_id == "c1"
    names = {m.name for m in cm.metrics}
    assert {
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_fs_usage_bytes",
        "container_start_time_seconds",
    } <= names
    for m in [*pm.metrics, *cm.metrics]:
        assert len(m.label_values) == keys[m.name], m.name
    assert list(cm.metrics[0].label_values[:5]) == ["pod-p1", "ns", "name-c1", "c1", "busybox"]


async def test_limits_are_cached_until_invalidated(env: Env) -> None:
    c1 = container("c1", "p1", pid=101)
    env.run(c1, "/kubepods/pod1/c1", cpu_ns=S)
    limit_file = env.host.root / "memory/kubepods/pod1/c1/memory.limit_in_bytes"
    [stats] = await env.collector.containers([c1])
    assert not stats.memory.HasField("available_bytes")
    limit_file.write_text(str(64 << 20))
    [stats] = await env.collector.containers([c1])
    assert not stats.memory.HasField("available_bytes")  # cached: only berth changes it
    env.collector.invalidate("c1")
    [stats] = await env.collector.containers([c1])
    assert stats.memory.available_bytes.value == (64 << 20) - 2_000_000


async def test_attributes_follow_a_new_config(env: Env) -> None:
    import dataclasses

    c1 = container("c1", "p1", pid=0, state=api_pb2.CONTAINER_CREATED)
    [first] = await env.collector.containers([c1])
    config = api_pb2.ContainerConfig()
    config.CopyFrom(c1.config)
    config.labels["new"] = "label"
    [second] = await env.collector.containers([dataclasses.replace(c1, config=config)])
    assert "new" not in first.attributes.labels and second.attributes.labels["new"] == "label"


async def test_cgroup_v2_container_and_pod(tmp_path: Path) -> None:
    from tests.unit.cri.stats.cgroup_fixtures import V2Host

    host = V2Host(tmp_path / "cg")
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=True)
    proc = tmp_path / "proc"
    collector = StatsCollector(
        layout=layout,
        layers=WritableLayers(lambda cid: tmp_path / "upper" / cid),
        pod_dirs=configured_pod_dirs(
            layout, cgroup_root="/", driver="cgroupfs", self_dirs=layout.at("/")
        ),
        proc=proc,
        clock=lambda: NOW,
    )
    host.cgroup("/kubepods/pod1", usage_usec=9_000_000, pids=4)
    host.cgroup("/kubepods/pod1/c1", usage_usec=4_000_000, current=5_000_000, limit="8000000")
    (proc / "101").mkdir(parents=True)
    (proc / "101" / "cgroup").write_text(host.proc_cgroup("/kubepods/pod1/c1"))
    c1 = container("c1", "p1", pid=101)
    [pod] = await collector.pods([sandbox("p1", net=False)], {"p1": [c1]})
    [stats] = pod.linux.containers
    assert stats.cpu.usage_core_nano_seconds.value == 4 * S
    assert stats.memory.working_set_bytes.value == 3_000_000  # current - inactive_file
    assert stats.memory.available_bytes.value == 5_000_000
    assert stats.swap.swap_usage_bytes.value == 8192
    assert not stats.swap.HasField("swap_available_bytes")  # swap.max is "max"
    assert not stats.HasField("writable_layer")  # no upper dir in this fixture
    assert pod.linux.cpu.usage_core_nano_seconds.value == 9 * S  # the pod's own cgroup
    assert pod.linux.process.process_count.value == 4


async def test_systemd_pod_slice_is_found_without_a_running_container(tmp_path: Path) -> None:
    from tests.unit.cri.stats.cgroup_fixtures import V2Host

    host = V2Host(tmp_path / "cg")
    layout = CgroupLayout.from_text(host.mountinfo, v2_controllers=True)
    collector = StatsCollector(
        layout=layout,
        layers=WritableLayers(lambda cid: tmp_path / "upper" / cid),
        pod_dirs=configured_pod_dirs(
            layout, cgroup_root="self", driver="systemd", self_dirs=layout.at("/elsewhere")
        ),
        proc=tmp_path / "proc",
        clock=lambda: NOW,
    )
    slice_dir = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
    host.cgroup(slice_dir, usage_usec=7_000_000, pids=2)
    pod = sandbox("p1", "kubepods-besteffort-pod1.slice", net=False)
    [stats] = await collector.pods([pod], {"p1": []})
    assert stats.linux.cpu.usage_core_nano_seconds.value == 7 * S
    assert stats.linux.process.process_count.value == 2
