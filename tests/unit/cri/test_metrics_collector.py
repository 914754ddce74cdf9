from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cri import errors, metrics, metrics_collector
from cri.api.v1 import api_pb2
from cri.cni.invoke import PluginCall
from cri.store import ContainerRecord, SandboxRecord, Store
from snapshotter.puller import Progress


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_state_counts_every_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta.db")
    await store.open()
    try:
        config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p", uid="u"))
        await store.add_sandbox(
            SandboxRecord(id="s1", config=config, runtime_handler="r", created_at=1)
        )
        for cid, state in (
            ("a", api_pb2.CONTAINER_RUNNING),
            ("b", api_pb2.CONTAINER_RUNNING),
            ("c", api_pb2.CONTAINER_EXITED),
        ):
            await store.add_container(
                ContainerRecord(
                    id=cid,
                    sandbox_id="s1",
                    config=api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=cid)),
                    image_id="i",
                    image_ref="i",
                    image_name="i",
                    created_at=1,
                    runtime_handler="r",
                    state=state,
                )
            )
        sandboxes, containers = metrics_collector.count_states(store)
    finally:
        await store.close()
    assert sandboxes == {"ready": 1, "notready": 0}
    assert containers == {"created": 0, "running": 2, "exited": 1, "unknown": 0}


async def test_state_collector_counts_on_the_loop_for_a_scrape_thread() -> None:
    loop = asyncio.get_running_loop()
    threads: list[int] = []

    def count() -> metrics_collector.Counts:
        threads.append(threading.get_ident())
        return {"ready": 2, "notready": 1}, {"running": 3}

    registry = CollectorRegistry()
    registry.register(metrics_collector.StateCollector(count, loop))  # describe(): no count
    assert threads == []
    text = await asyncio.to_thread(generate_latest, registry)
    assert threads == [threading.get_ident()]  # counted on the loop's thread
    assert b'berth_sandboxes{state="ready"} 2.0' in text
    assert b'berth_containers{state="running"} 3.0' in text


async def test_state_collector_gives_up_when_the_loop_does_not_answer() -> None:
    other = asyncio.new_event_loop()  # never runs: the count can't be taken
    try:
        registry = CollectorRegistry()
        collector = metrics_collector.StateCollector(lambda: ({}, {}), other)
        registry.register(collector)
        metrics_collector.SCRAPE_TIMEOUT, saved = 0.05, metrics_collector.SCRAPE_TIMEOUT
        try:
            text = await asyncio.to_thread(generate_latest, registry)
        finally:
            metrics_collector.SCRAPE_TIMEOUT = saved
        assert b"berth_sandboxes{" not in text
    finally:
        other.close()


class FakeExecutor:
    def __init__(self, outcome: Exception | None) -> None:
        self.outcome = outcome

    async def __call__(self, call: PluginCall) -> Mapping[str, Any] | None:
        if self.outcome is not None:
            raise self.outcome
        return {"cniVersion": "1.0.0"}


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (None, "ok"),
        (errors.Unavailable("boom"), "error"),
        (errors.DeadlineExceeded("slow"), "timeout"),
    ],
)
async def test_timed_executor_observes_each_call(failure: Exception | None, outcome: str) -> None:
    labels = {"operation": "ADD", "outcome": outcome}
    before = sample("berth_cni_duration_seconds_count", labels)
    timed = metrics_collector.TimedExecutor(FakeExecutor(failure))
    call = PluginCall(command="ADD", network="n", plugin="bridge", config={})
    if failure is None:
        assert await timed(call) == {"cniVersion": "1.0.0"}
    else:
        with pytest.raises(type(failure)):
            await timed(call)
    assert sample("berth_cni_duration_seconds_count", labels) == before + 1


def test_pull_meter_counts_growth_per_layer() -> None:
    before = sample("berth_image_pull_bytes_total")
    meter = metrics_collector.PullMeter()
    for layer, done in (("l1", 100), ("l1", 250), ("l2", 50), ("l1", 0), ("l1", 30)):
        meter.progress(Progress(ref="r", layer=layer, done=done, total=300))
    assert sample("berth_image_pull_bytes_total") == before + 250 + 50 + 30


def test_pull_meter_times_successful_pulls_only() -> None:
    before = sample("berth_image_pull_duration_seconds_count")
    meter = metrics_collector.PullMeter()
    with meter.timed():
        pass
    with pytest.raises(RuntimeError), meter.timed():
        raise RuntimeError("pull failed")
    assert sample("berth_image_pull_duration_seconds_count") == before + 1
