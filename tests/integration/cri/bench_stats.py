"""Measure the stats RPCs on a full node: P pods x 2 sleeping containers (default 110).

Run as root: `.venv/bin/python -m tests.integration.cri.bench_stats [PODS]`.

Starts a private registry, a CNI bridge and berthd (cgroup_root "self"), fills the node, then
prints p50/p90 latencies of
- the collector called in-process (cri.stats: the cgroup, /proc and layer reads plus building
  the messages, as berthd's handlers run them, without gRPC), and
- the RPCs over gRPC (what a kubelet sees): one PLEG relist, ListContainerStats,
  ListPodSandboxStats, ListPodSandboxMetrics,
and berthd's CPU while a kubelet's cadence is replayed (relist every 1 s, both stats lists
every 10 s). Prints figures and asserts nothing. Removes every pod, stops every process it
started and deletes the bridge, also when interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cri import cgroups
from cri.api.v1 import api_pb2
from cri.stats import podmetrics, queries
from cri.stats.cgroupfs import CgroupLayout, parse_proc_cgroup
from cri.stats.collector import StatsCollector, configured_pod_dirs
from cri.stats.disk import WritableLayers
from cri.store import Store
from snapshotter import errors as snapshot_errors
from tests.support.berthd import Berthd
from tests.support.cri_configs import container_config, sandbox_config
from tests.support.oci_builder import busybox_image
from tests.support.registry import push_image, start_registry

CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return f"p50 {statistics.median(ordered):7.2f} ms  p90 {p90:7.2f} ms  (n={len(ordered)})"


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def bridge_conf(base: Path) -> tuple[Path, str]:
    octet = random.randrange(100, 250)
    bridge = f"bst{octet}"
    conf_dir = base / "net.d"
    conf_dir.mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"bench-{bridge}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(base / "ipam"),
                    "ranges": [[{"subnet": f"10.{octet}.0.0/16"}]],
                },
            }
        ],
    }
    (conf_dir / "10-bench.conflist").write_text(json.dumps(conflist))
    return conf_dir, bridge


def start_pod(daemon: Berthd, image: str, i: int) -> str:
    rt = daemon.client.runtime
    config = sandbox_config(f"bench{i}")
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    for name in ("app", "sidecar"):
        cid = rt.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id,
                config=container_config(name, image, ["sleep", "100000"]),
                sandbox_config=config,
            )
        ).container_id
        rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    return str(pod_id)


def in_process(daemon: Berthd) -> None:
    """The collector in this process on berthd's store (read-only) and cgroups."""

    async def measure() -> None:
        store = Store(daemon.root / "meta.db")
        await store.open()
        try:
            await _measure_collector(daemon, store)
        finally:
            await store.close()

    asyncio.run(measure())


def _upper_dirs(daemon: Berthd) -> Callable[[str], Path]:
    uppers: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        point = fields.split()[4]
        if point.startswith(str(daemon.state / "containers")) and point.endswith("/rootfs"):
            opts = tail.split()[2].split(",")
            upper = next(o for o in opts if o.startswith("upperdir=")).split("=", 1)[1]
            uppers[Path(point).parent.parent.name] = Path(upper)

    def upper(cid: str) -> Path:
        try:
            return uppers[cid]
        except KeyError:
            raise snapshot_errors.NotFound(f"no rootfs mount of {cid}") from None

    return upper


def _collector(daemon: Berthd) -> StatsCollector:
    layout = CgroupLayout.from_text(
        Path("/proc/self/mountinfo").read_text(), v2_controllers=cgroups.is_cgroup_v2()
    )
    self_dirs = layout.dirs(parse_proc_cgroup(Path("/proc/self/cgroup").read_text()))
    return StatsCollector(
        layout=layout,
        layers=WritableLayers(_upper_dirs(daemon)),
        pod_dirs=configured_pod_dirs(
            layout, cgroup_root="self", driver="cgroupfs", self_dirs=self_dirs
        ),
    )


async def _measure_collector(daemon: Berthd, store: Store) -> None:
    collector = _collector(daemon)
    running = [c for c in store.containers() if c.state == api_pb2.CONTAINER_RUNNING]
    ready = [s for s in store.sandboxes() if s.state == api_pb2.SANDBOX_READY]
    by_pod = queries.by_pod(store.containers())
    shared = queries.shared_parents(store.sandboxes())

    async def containers() -> None:
        stats = await collector.containers(running)
        api_pb2.ListContainerStatsResponse(stats=stats).SerializeToString()

    async def pods() -> None:
        stats = await collector.pods(ready, by_pod, shared_parents=shared)
        api_pb2.ListPodSandboxStatsResponse(stats=stats).SerializeToString()

    async def metrics() -> None:
        found = await podmetrics.list_pod_metrics(collector, ready, by_pod)
        api_pb2.ListPodSandboxMetricsResponse(pod_metrics=found).SerializeToString()

    print(f"in-process collector ({len(running)} containers, {len(ready)} pods):")
    for label, fn, n in (
        ("  container stats", containers, 30),
        ("  pod stats      ", pods, 30),
        ("  pod metrics    ", metrics, 5),
    ):
        await fn()  # warm the caches (cgroup dirs, layer paths), as a running berthd has them
        samples, cpu = [], []
        for _ in range(n):
            started, started_cpu = time.perf_counter(), time.process_time()
            await fn()
            samples.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        # CPU time is what the call costs; wall time also has whatever else the host runs.
        print(f"{label}: {percentiles(samples)}; CPU p50 {statistics.median(cpu):.2f} ms")


def over_grpc(daemon: Berthd) -> None:
    rt = daemon.client.runtime
    relist = (api_pb2.ListPodSandboxRequest(), api_pb2.ListContainersRequest())
    calls: list[tuple[str, Callable[[], Any], int]] = [
        (
            "  relist (ListPodSandbox+ListContainers)",
            lambda: (rt.ListPodSandbox(relist[0]), rt.ListContainers(relist[1])),
            30,
        ),
        (
            "  ListContainerStats                    ",
            lambda: rt.ListContainerStats(api_pb2.ListContainerStatsRequest()),
            30,
        ),
        (
            "  ListPodSandboxStats                   ",
            lambda: rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()),
            30,
        ),
        (
            "  ListPodSandboxMetrics                 ",
            lambda: rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()),
            5,
        ),
    ]
    print("over gRPC (berthd):")
    for label, fn, n in calls:
        fn()
        print(f"{label}: {percentiles(timed(fn, n))}")
    size = rt.ListContainerStats(api_pb2.ListContainerStatsRequest()).ByteSize()
    print(f"  ListContainerStats response: {size / 1024:.0f} KiB")
    server_side(daemon)


def server_side(daemon: Berthd) -> None:
    """berthd's own timing of each call (its instrument layer logs it at debug level)."""
    durations: dict[str, list[float]] = {}
    for line in daemon.logs().splitlines():
        if '"request done"' in line:
            event = json.loads(line)
            durations.setdefault(event["method"], []).append(event["duration_ms"])
    print("inside berthd (handler + instrument layer, no transport):")
    for method in ("ListContainerStats", "ListPodSandboxStats", "ListPodSandboxMetrics"):
        if method in durations:
            print(f"  {method:38}: {percentiles(durations[method])}")


def cadence(daemon: Berthd, seconds: float) -> None:
    """Relist every 1 s, ListContainerStats + ListPodSandboxStats every 10 s."""
    assert daemon.proc is not None
    rt, pid = daemon.client.runtime, daemon.proc.pid
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        rt.ListPodSandbox(api_pb2.ListPodSandboxRequest())
        rt.ListContainers(api_pb2.ListContainersRequest())
        if tick % 10 == 0:
            rt.ListContainerStats(api_pb2.ListContainerStatsRequest())
            rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest())
        tick += 1
        time.sleep(max(0.0, start + tick - time.monotonic()))
    used = cpu_seconds(pid) - start_cpu
    wall = time.monotonic() - start
    print(
        f"berthd CPU at the kubelet's cadence over {wall:.0f} s: "
        f"{100 * used / wall:.2f} % of a core"
    )


def main(pods: int) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bst", dir="/tmp") as tmp:
        base = Path(tmp)
        registry = start_registry(base / "registry")
        conf_dir, bridge = bridge_conf(base)
        daemon = Berthd(
            base / "bd",
            {
                "cni": {"conf_dir": str(conf_dir)},
                "registry": {"insecure": [registry.host], "config_path": ""},
            },
        )
        try:
            image = f"{registry.host}/library/busybox:latest"
            push_image(registry.url, "library/busybox", "latest", busybox_image())
            (base / "bd").mkdir()
            daemon.start()
            daemon.client.images.PullImage(
                api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image))
            )
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: start_pod(daemon, image, i), range(pods)))
            print(f"{pods} pods x 2 containers started in {time.monotonic() - started:.1f} s")
            in_process(daemon)
            over_grpc(daemon)
            cadence(daemon, 60)
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            if daemon.proc is not None:
                rt = daemon.client.runtime
                ids = [p.id for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items]
                with ThreadPoolExecutor(4) as pool:
                    list(
                        pool.map(
                            lambda p: rt.RemovePodSandbox(
                                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=p)
                            ),
                            ids,
                        )
                    )
                daemon.stop()
            registry.stop()
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 110)
