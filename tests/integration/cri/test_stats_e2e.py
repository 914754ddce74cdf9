"""Stats, metrics, events and resource updates of real pods, checked against the kernel:
cgroup files read directly, ``du`` on the writable layer, ``ip -s link`` inside the pod, and
``crictl stats``/``statsp`` where crictl is installed."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient
from tests.integration.cri.test_pod_e2e import create_start, run_pod, wait_state
from tests.support import cgroup_view as cg
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]

S = 1_000_000_000
BLOB = 20 * 1024 * 1024


# -- reading the kernel's side -----------------------------------------------------------------


def container_pid(daemon: Berthd, cid: str) -> int:
    resp = daemon.client.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True)
    )
    return int(json.loads(resp.info["info"])["pid"])


def upper_dir(daemon: Berthd, cid: str) -> Path:
    """The overlay upperdir of the container's rootfs mount, from our mountinfo."""
    rootfs = str(daemon.state / "containers" / cid / "bundle" / "rootfs")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if fields.split()[4] == rootfs:
            options = tail.split()[2].split(",")
            return Path(next(o for o in options if o.startswith("upperdir=")).split("=", 1)[1])
    raise AssertionError(f"no rootfs mount at {rootfs}")


def du(path: Path, *flags: str) -> int:
    out = subprocess.run(
        ["du", "-s", *flags, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[0])


def net_pin(daemon: Berthd, pod_id: str) -> str:
    resp = daemon.client.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    )
    return str(json.loads(resp.info["info"])["namespaces"]["net"])


def ip_link(pin: str, ifname: str = "eth0") -> dict[str, Any]:
    out = subprocess.run(
        ["nsenter", f"--net={pin}", "ip", "-s", "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    )
    stats: dict[str, Any] = json.loads(out.stdout)[0]["stats64"]
    return stats


def exec_ok(daemon: Berthd, cid: str, *cmd: str) -> bytes:
    resp = daemon.client.runtime.ExecSync(
        api_pb2.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=30)
    )
    assert resp.exit_code == 0, resp.stderr
    return bytes(resp.stdout)


def wait_file(daemon: Berthd, cid: str, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        resp = daemon.client.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=cid, cmd=["test", "-e", path], timeout=10)
        )
        if resp.exit_code == 0:
            return
        assert time.monotonic() < deadline, f"{path} never appeared in {cid}"
        time.sleep(0.05)


def between(before: int, value: int, after: int) -> bool:
    return min(before, after) <= value <= max(before, after)


def container_stats(daemon: Berthd, cid: str) -> api_pb2.ContainerStats:
    return daemon.client.runtime.ContainerStats(
        api_pb2.ContainerStatsRequest(container_id=cid)
    ).stats


# -- a pod with a writer and a CPU burner ----------------------------------------------------


@pytest.fixture
def busy_pod(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> Iterator[dict[str, str]]:
    pod_id = run_pod(pod_berthd, "statspod", tmp_path)
    writer = create_start(
        pod_berthd,
        pod_id,
        "writer",
        registry.ref(),
        ["sh", "-c", f"head -c {BLOB} /dev/zero > /blob && touch /done && exec sleep 1000"],
        tmp_path,
    )
    burner = create_start(
        pod_berthd, pod_id, "burner", registry.ref(), ["sh", "-c", "while :; do :; done"], tmp_path
    )
    wait_file(pod_berthd, writer, "/done")
    yield {"pod": pod_id, "writer": writer, "burner": burner}
    pod_berthd.client.runtime.RemovePodSandbox(
        api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    )


def test_container_stats_agree_with_the_cgroup_files(
    pod_berthd: Berthd, busy_pod: dict[str, str]
) -> None:
    cid = busy_pod["writer"]
    pid = container_pid(pod_berthd, cid)
    cpu, mem = cg.cgroup_dir(pid, "cpuacct"), cg.cgroup_dir(pid, "memory")
    # The kubelet's leaf rule: "<id>" (cgroupfs) or "berth-<id>.scope" (systemd).
    assert cpu.name == mem.name == cg.container_leaf(cid)

    cpu_before, usage_before = cg.cpu_usage_ns(cpu), cg.memory_usage(mem)
    stat_before = cg.memory_stat(mem)
    stats = container_stats(pod_berthd, cid)
    cpu_after, usage_after = cg.cpu_usage_ns(cpu), cg.memory_usage(mem)
    stat_after = cg.memory_stat(mem)

    assert stats.attributes.id == cid and stats.attributes.metadata.name == "writer"
    assert between(cpu_before, stats.cpu.usage_core_nano_seconds.value, cpu_after)
    assert between(usage_before, stats.memory.usage_bytes.value, usage_after)
    ws = [
        u - s["inactive_file"] for u, s in ((usage_before, stat_before), (usage_after, stat_after))
    ]
    assert between(ws[0], stats.memory.working_set_bytes.value, ws[1])
    assert between(stat_before["rss"], stats.memory.rss_bytes.value, stat_after["rss"])
    assert between(stat_before["pgfault"], stats.memory.page_faults.value, stat_after["pgfault"])
    assert stats.memory.usage_bytes.value >= BLOB  # the blob's page cache is charged to it
    assert not stats.memory.HasField("available_bytes")  # no limit set

    upper = upper_dir(pod_berthd, cid)
    assert stats.writable_layer.used_bytes.value == du(upper, "-B1") >= BLOB
    assert stats.writable_layer.inodes_used.value == du(upper, "--inodes")
    assert stats.writable_layer.fs_id.mountpoint


def test_cpu_rate_is_consistent_with_the_reported_usage(
    pod_berthd: Berthd, busy_pod: dict[str, str]
) -> None:
    cid = busy_pod["burner"]
    first = container_stats(pod_berthd, cid)
    time.sleep(1.2)  # the measured interval itself, not a wait for an event
    second = container_stats(pod_berthd, cid)
    used = second.cpu.usage_core_nano_seconds.value - first.cpu.usage_core_nano_seconds.value
    elapsed = second.cpu.timestamp - first.cpu.timestamp
    assert elapsed >= S
    assert second.cpu.usage_nano_cores.value == used * S // elapsed
    # A busy loop, not an idle container; its share of the 2 cores depends on the machine's
    # load (under a load average of 30 it gets well under a third of a core).
    assert second.cpu.usage_nano_cores.value > 0.02 * S


def test_list_container_stats_filters(pod_berthd: Berthd, busy_pod: dict[str, str]) -> None:
    rt = pod_berthd.client.runtime

    def listed(**kw: Any) -> set[str]:
        req = api_pb2.ListContainerStatsRequest(filter=api_pb2.ContainerStatsFilter(**kw))
        return {s.attributes.id for s in rt.ListContainerStats(req).stats}

    both = {busy_pod["writer"], busy_pod["burner"]}
    assert {
        s.attributes.id for s in rt.ListContainerStats(api_pb2.ListContainerStatsRequest()).stats
    } >= both
    assert listed(pod_sandbox_id=busy_pod["pod"]) == both
    assert listed(id=busy_pod["writer"][:12]) == {busy_pod["writer"]}
    assert listed(label_selector={"io.kubernetes.container.name": "burner"}) == {busy_pod["burner"]}
    assert listed(label_selector={"io.kubernetes.container.name": "nope"}) == set()
    streamed = {
        s.attributes.id
        for page in rt.StreamContainerStats(
            api_pb2.StreamContainerStatsRequest(
                filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=busy_pod["pod"])
            )
        )
        for s in page.container_stats
    }
    assert streamed == both


def test_pod_stats_agree_with_ip_link_and_the_containers(
    pod_berthd: Berthd, busy_pod: dict[str, str], cni_net: CniNet
) -> None:
    rt = pod_berthd.client.runtime
    pin = net_pin(pod_berthd, busy_pod["pod"])
    subprocess.run(  # some traffic, so the counters are not all zero
        ["nsenter", f"--net={pin}", "ping", "-c", "2", "-i", "0.2", "-W", "1", cni_net.gateway],
        capture_output=True,
        check=False,
    )
    before = ip_link(pin)
    stats = rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=busy_pod["pod"])).stats
    after = ip_link(pin)
    eth0 = stats.linux.network.default_interface
    assert eth0.name == "eth0"
    assert between(before["rx"]["bytes"], eth0.rx_bytes.value, after["rx"]["bytes"])
    assert between(before["tx"]["bytes"], eth0.tx_bytes.value, after["tx"]["bytes"])
    assert eth0.tx_bytes.value > 0
    assert between(before["rx"]["errors"], eth0.rx_errors.value, after["rx"]["errors"])
    assert [i.name for i in stats.linux.network.interfaces] == ["eth0"]

    assert stats.attributes.id == busy_pod["pod"]
    ids = {c.attributes.id for c in stats.linux.containers}
    assert ids == {busy_pod["writer"], busy_pod["burner"]}
    # No cgroup parent: the pod's figures are the sums of its containers'.
    pids = sum(
        cg.read_int(cg.cgroup_dir(container_pid(pod_berthd, c), "pids") / "pids.current")
        for c in (busy_pod["writer"], busy_pod["burner"])
    )
    assert stats.linux.process.process_count.value == pids
    cpu = sum(c.cpu.usage_core_nano_seconds.value for c in stats.linux.containers)
    assert stats.linux.cpu.usage_core_nano_seconds.value == cpu

    listed = rt.ListPodSandboxStats(
        api_pb2.ListPodSandboxStatsRequest(filter=api_pb2.PodSandboxStatsFilter(id=busy_pod["pod"]))
    ).stats
    assert [s.attributes.id for s in listed] == [busy_pod["pod"]]


def test_pod_sandbox_metrics(pod_berthd: Berthd, busy_pod: dict[str, str]) -> None:
    rt = pod_berthd.client.runtime
    descriptors = rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
    keys = {d.name: list(d.label_keys) for d in descriptors}
    metrics = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
    [pod] = [m for m in metrics if m.pod_sandbox_id == busy_pod["pod"]]
    by_container = {c.container_id: c.metrics for c in pod.container_metrics}
    assert set(by_container) == {busy_pod["writer"], busy_pod["burner"]}
    for metric in [*pod.metrics, *by_container[busy_pod["writer"]]]:
        assert len(metric.label_values) == len(keys[metric.name]), metric.name
    writer = {m.name: m for m in by_container[busy_pod["writer"]]}
    pid = container_pid(pod_berthd, busy_pod["writer"])
    assert writer["container_processes"].value.value == 1  # sleep
    usage = cg.memory_usage(cg.cgroup_dir(pid, "memory"))
    assert abs(writer["container_memory_usage_bytes"].value.value - usage) < 1 << 20
    assert writer["container_fs_usage_bytes"].value.value >= BLOB
    labels = dict(
        zip(keys["container_memory_rss"], writer["container_memory_rss"].label_values, strict=True)
    )
    assert labels == {
        "pod": "statspod",
        "namespace": "default",
        "container": "writer",
        "id": busy_pod["writer"],
        "image": labels["image"],
    }
    assert "container_network_receive_bytes_total" in {m.name for m in pod.metrics}
    streamed = [
        m.pod_sandbox_id
        for page in rt.StreamPodSandboxMetrics(api_pb2.StreamPodSandboxMetricsRequest())
        for m in page.pod_sandbox_metrics
    ]
    assert busy_pod["pod"] in streamed


@pytest.mark.skipif(shutil.which("crictl") is None, reason="crictl is not installed")
def test_crictl_stats_and_statsp(pod_berthd: Berthd, busy_pod: dict[str, str]) -> None:
    def crictl(*args: str) -> Any:
        out = subprocess.run(
            [
                "crictl",
                "--runtime-endpoint",
                f"unix://{pod_berthd.socket}",
                "--timeout",
                "10s",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    stats = crictl("stats", "-o", "json", "--id", busy_pod["writer"])["stats"]
    [writer] = stats
    mem = cg.cgroup_dir(container_pid(pod_berthd, busy_pod["writer"]), "memory")
    ws = cg.memory_usage(mem) - cg.memory_stat(mem)["inactive_file"]
    assert abs(int(writer["memory"]["workingSetBytes"]["value"]) - ws) < 1 << 20
    assert int(writer["writableLayer"]["usedBytes"]["value"]) >= BLOB
    pods = crictl("statsp", "-o", "json", "--id", busy_pod["pod"])["stats"]
    assert [p["attributes"]["id"] for p in pods] == [busy_pod["pod"]]
    assert int(pods[0]["linux"]["network"]["defaultInterface"]["txBytes"]["value"]) > 0


# -- cgroup parents, resource updates -----------------------------------------------------------


def test_pod_with_its_own_cgroup_and_resource_updates(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    parent = cg.pod_parent(f"berthtest{uuid.uuid4().hex[:8]}")
    config = sandbox_config("ownpod", log_directory=str(tmp_path))
    config.linux.cgroup_parent = parent
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    made: set[Path] = set()
    try:
        cid = rt.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id,
                config=container_config("app", registry.ref(), ["sleep", "1000"]),
                sandbox_config=config,
            )
        ).container_id
        rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
        assert (
            wait_state(pod_berthd, cid, api_pb2.CONTAINER_RUNNING).state
            == api_pb2.CONTAINER_RUNNING
        )
        pid = container_pid(pod_berthd, cid)
        pod_dirs = {c: cg.cgroup_dir(pid, c).parent for c in ("cpuacct", "memory", "pids", "cpu")}
        made = {d for d in pod_dirs.values()}
        assert all(d.name == cg.parent_leaf(parent) for d in made)

        stats = rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
        assert (
            stats.linux.process.process_count.value
            == cg.read_int(pod_dirs["pids"] / "pids.current")
            == 1
        )
        cpu = cg.cpu_usage_ns(pod_dirs["cpuacct"])
        assert stats.linux.cpu.usage_core_nano_seconds.value == cpu  # the pod cgroup, sleeping

        # UpdateContainerResources reaches the container's cgroup and its status.
        update = api_pb2.LinuxContainerResources(
            cpu_shares=512, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=64 << 20
        )
        rt.UpdateContainerResources(
            api_pb2.UpdateContainerResourcesRequest(container_id=cid, linux=update)
        )
        assert cg.memory_limit(cg.cgroup_dir(pid, "memory")) == 64 << 20
        assert cg.cpu_quota(cg.cgroup_dir(pid, "cpu")) == 50000
        assert cg.cpu_shares_as_set(cg.cgroup_dir(pid, "cpu"), 512)
        status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid)).status
        assert status.resources.linux.memory_limit_in_bytes == 64 << 20
        assert status.resources.linux.cpu_quota == 50000
        stats_c = container_stats(pod_berthd, cid)
        assert (
            stats_c.memory.available_bytes.value
            == (64 << 20) - stats_c.memory.working_set_bytes.value
        )
        # A partial update keeps the rest.
        rt.UpdateContainerResources(
            api_pb2.UpdateContainerResourcesRequest(
                container_id=cid,
                linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=96 << 20),
            )
        )
        assert cg.memory_limit(cg.cgroup_dir(pid, "memory")) == 96 << 20
        assert cg.cpu_quota(cg.cgroup_dir(pid, "cpu")) == 50000

        # UpdatePodSandboxResources: no kubelet sized this pod cgroup, so berth does.
        rt.UpdatePodSandboxResources(
            api_pb2.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=pod_id,
                resources=api_pb2.LinuxContainerResources(
                    memory_limit_in_bytes=200 << 20, cpu_shares=256
                ),
                overhead=api_pb2.LinuxContainerResources(memory_limit_in_bytes=10 << 20),
            )
        )
        assert cg.memory_limit(pod_dirs["memory"]) == 210 << 20
        assert cg.cpu_shares_as_set(pod_dirs["cpu"], 256)
    finally:
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        # runc removes the container's cgroup; the pod's is the kubelet's, here ours.
        cg.remove_pod_parents(made or {parent})


def test_update_of_an_unknown_container_is_not_found(pod_berthd: Berthd) -> None:
    with pytest.raises(grpc.RpcError) as info:
        pod_berthd.client.runtime.UpdateContainerResources(
            api_pb2.UpdateContainerResourcesRequest(
                container_id="nope", linux=api_pb2.LinuxContainerResources(cpu_shares=2)
            )
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# -- events ------------------------------------------------------------------------------------


class EventReader:
    """GetContainerEvents read on a thread into a queue."""

    def __init__(self, daemon: Berthd) -> None:
        self.client = CriClient(str(daemon.socket))  # its own channel: outlives daemon.client
        self.call = self.client.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=120)
        self.events: queue.Queue[api_pb2.ContainerEventResponse | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError as exc:
            self.events.put(exc)

    def take(self, n: int) -> list[api_pb2.ContainerEventResponse]:
        out = []
        for _ in range(n):
            item = self.events.get(timeout=30)
            assert not isinstance(item, BaseException), item
            out.append(item)
        return out

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)
        self.client.close()


def wait_until_subscribed(daemon: Berthd, reader: EventReader) -> None:
    """The stream is live once an event arrives: run host-network probe pods (no CNI) until
    one's event comes through, then remove it and drain events up to its DELETED."""
    rt = daemon.client.runtime
    for attempt in range(10):
        config = sandbox_config(f"probe{attempt}", host_network=True)
        probe = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
        try:
            first = reader.events.get(timeout=1)
        except queue.Empty:
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=probe))
            continue
        assert not isinstance(first, BaseException), first
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=probe))
        while True:  # events of earlier probes may come first
            [e] = reader.take(1)
            if (
                e.container_id == probe
                and e.container_event_type == api_pb2.CONTAINER_DELETED_EVENT
            ):
                return
    raise AssertionError("GetContainerEvents never delivered an event")


def test_container_events_in_order_with_pod_status(
    pod_berthd: Berthd, registry: LocalRegistry, tmp_path: Path
) -> None:
    rt = pod_berthd.client.runtime
    reader = EventReader(pod_berthd)
    try:
        wait_until_subscribed(pod_berthd, reader)
        pod_id = run_pod(pod_berthd, "evpod", tmp_path)
        cid = create_start(
            pod_berthd, pod_id, "c", registry.ref(), ["sh", "-c", "exit 0"], tmp_path
        )
        wait_state(pod_berthd, cid, api_pb2.CONTAINER_EXITED)
        rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid))
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        got = reader.take(8)
    finally:
        reader.close()
    E = api_pb2
    assert [(e.container_id, e.container_event_type) for e in got] == [
        (pod_id, E.CONTAINER_CREATED_EVENT),
        (pod_id, E.CONTAINER_STARTED_EVENT),
        (cid, E.CONTAINER_CREATED_EVENT),
        (cid, E.CONTAINER_STARTED_EVENT),
        (cid, E.CONTAINER_STOPPED_EVENT),
        (cid, E.CONTAINER_DELETED_EVENT),
        (pod_id, E.CONTAINER_STOPPED_EVENT),
        (pod_id, E.CONTAINER_DELETED_EVENT),
    ]
    for e in got:
        assert e.pod_sandbox_status.id == pod_id and e.pod_sandbox_status.metadata.name == "evpod"
        assert e.created_at > 0
    states = [{s.id: s.state for s in e.containers_statuses} for e in got]
    assert states[3] == {cid: E.CONTAINER_RUNNING}
    assert states[4] == {cid: E.CONTAINER_EXITED}
    assert states[5] == {}  # deleted
    assert got[6].pod_sandbox_status.state == E.SANDBOX_NOTREADY


def test_shutdown_ends_event_streams_without_waiting_out_the_grace_period(
    pod_berthd: Berthd,
) -> None:
    reader = EventReader(pod_berthd)
    try:
        wait_until_subscribed(pod_berthd, reader)
        started = time.monotonic()
        assert pod_berthd.stop() == 0
        assert time.monotonic() - started < 5  # the grace period is 10 s
        reader.thread.join(10)
        assert not reader.thread.is_alive()
        assert reader.events.empty()  # the stream ended cleanly: no error, no stray event
    finally:
        reader.close()


# -- runtime metrics, checkpoint, streams --------------------------------------------------


def test_prometheus_endpoint_has_runtime_metrics(
    pod_berthd: Berthd, busy_pod: dict[str, str]
) -> None:
    events = [json.loads(line) for line in pod_berthd.logs().splitlines() if line.startswith("{")]
    address = next(e["address"] for e in events if e["event"] == "metrics serving")
    body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    assert 'berth_containers{state="running"} 2.0' in body
    assert 'berth_sandboxes{state="ready"} 1.0' in body
    assert 'berth_cni_duration_seconds_count{operation="ADD",outcome="ok"}' in body
    assert "berth_image_pull_duration_seconds_count 1.0" in body
    pulled = next(
        line for line in body.splitlines() if line.startswith("berth_image_pull_bytes_total")
    )
    assert float(pulled.split()[1]) > 0
    assert "berth_store_write_duration_seconds_count" in body


def test_checkpoint_is_refused_with_the_reason(
    pod_berthd: Berthd, busy_pod: dict[str, str]
) -> None:
    rt = pod_berthd.client.runtime
    with pytest.raises(grpc.RpcError) as info:
        rt.CheckpointContainer(
            api_pb2.CheckpointContainerRequest(
                container_id=busy_pod["writer"], location="/tmp/x.tar"
            )
        )
    assert info.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED)
    assert "CRIU" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        rt.CheckpointContainer(api_pb2.CheckpointContainerRequest(container_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        rt.CheckpointPod(api_pb2.CheckpointPodRequest(pod_sandbox_id=busy_pod["pod"]))
    assert "CRIU" in (info.value.details() or "")


def test_streaming_lists_match_the_unary_ones(pod_berthd: Berthd, busy_pod: dict[str, str]) -> None:
    rt, images = pod_berthd.client.runtime, pod_berthd.client.images
    pods = [
        p.id
        for page in rt.StreamPodSandboxes(api_pb2.StreamPodSandboxesRequest())
        for p in page.pod_sandboxes
    ]
    assert pods == [p.id for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items]
    ctrs = [
        c.id
        for page in rt.StreamContainers(api_pb2.StreamContainersRequest())
        for c in page.containers
    ]
    assert ctrs == [c.id for c in rt.ListContainers(api_pb2.ListContainersRequest()).containers]
    imgs = [
        i.id for page in images.StreamImages(api_pb2.StreamImagesRequest()) for i in page.images
    ]
    assert imgs == [i.id for i in images.ListImages(api_pb2.ListImagesRequest()).images] != []
    stats = [
        s.attributes.id
        for page in rt.StreamPodSandboxStats(api_pb2.StreamPodSandboxStatsRequest())
        for s in page.pod_sandbox_stats
    ]
    assert stats == [busy_pod["pod"]]
