"""Runtime metrics computed or measured outside the request path.

- :class:`StateCollector`: pods and containers by state, counted from the store when
  Prometheus scrapes (nothing to keep in sync on every state change). The scrape runs on the
  metrics server's thread while the store belongs to the event loop, so the count is taken
  on the loop and handed back.
- :class:`TimedExecutor`: wraps the CNI plugin executor to time every plugin call.
- :class:`PullMeter`: bytes downloaded (from the puller's progress reports) and the duration
  of each successful pull.

The metric objects themselves live in :mod:`cri.metrics`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cri import metrics
from cri.api.v1 import api_pb2
from cri.cni.invoke import PluginCall, PluginExecutor
from cri.store import Store
from snapshotter.puller import Progress

log = structlog.get_logger(__name__)

SANDBOX_STATES: dict[int, str] = {
    api_pb2.SANDBOX_READY: "ready",
    api_pb2.SANDBOX_NOTREADY: "notready",
}
CONTAINER_STATES: dict[int, str] = {
    api_pb2.CONTAINER_CREATED: "created",
    api_pb2.CONTAINER_RUNNING: "running",
    api_pb2.CONTAINER_EXITED: "exited",
    api_pb2.CONTAINER_UNKNOWN: "unknown",
}
SCRAPE_TIMEOUT = 2.0

Counts = tuple[dict[str, int], dict[str, int]]


def count_states(store: Store) -> Counts:
    """(sandboxes by state, containers by state), every state present (0 included)."""
    sandboxes = dict.fromkeys(SANDBOX_STATES.values(), 0)
    for s in store.sandboxes():
        name = SANDBOX_STATES.get(s.state, "unknown")
        sandboxes[name] = sandboxes.get(name, 0) + 1
    containers = dict.fromkeys(CONTAINER_STATES.values(), 0)
    for c in store.containers():
        containers[CONTAINER_STATES.get(c.state, "unknown")] += 1
    return sandboxes, containers


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class StateCollector(Collector):
    """``berth_sandboxes{state}`` and ``berth_containers{state}``, counted at scrape time."""

    def __init__(self, count: Callable[[], Counts], loop: asyncio.AbstractEventLoop) -> None:
        self._count = count
        self._loop = loop

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe() the registry would call collect() at registration, on the loop.
        yield from self._families(({}, {}))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._on_loop()
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("state metrics unavailable", error=str(exc) or type(exc).__name__)
            return
        yield from self._families(counts)

    def _on_loop(self) -> Counts:
        if _running_loop() is self._loop:  # called on the loop itself (a test, a describe)
            return self._count()
        future: concurrent.futures.Future[Counts] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(self._count())
            except Exception as exc:  # handed to the scraping thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=SCRAPE_TIMEOUT)

    @staticmethod
    def _families(counts: Counts) -> Iterator[GaugeMetricFamily]:
        sandboxes, containers = counts
        pods = GaugeMetricFamily("berth_sandboxes", "Pod sandboxes by state.", labels=["state"])
        for state, n in sorted(sandboxes.items()):
            pods.add_metric([state], n)
        yield pods
        ctrs = GaugeMetricFamily("berth_containers", "Containers by state.", labels=["state"])
        for state, n in sorted(containers.items()):
            ctrs.add_metric([state], n)
        yield ctrs


class TimedExecutor:
    """A CNI PluginExecutor that records each plugin call in ``berth_cni_duration_seconds``
    (labels: the CNI command, and ok / error / timeout)."""

    def __init__(self, inner: PluginExecutor) -> None:
        self._inner = inner

    async def __call__(self, call: PluginCall) -> Mapping[str, Any] | None:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._inner(call)
            outcome = "ok"
            return result
        except TimeoutError:
            outcome = "timeout"
            raise
        except Exception as exc:
            if getattr(type(exc), "kind", "") == "deadline_exceeded":
                outcome = "timeout"
            raise
        finally:
            metrics.CNI_DURATION.labels(call.command, outcome).observe(
                time.perf_counter() - started
            )


class PullMeter:
    """Counts a pull's downloaded bytes from its progress reports and times the pull.

    Progress reports are cumulative per layer and start again at 0 when a download restarts;
    each increase is counted. A download resumed from a partial file reports the partial
    bytes as progress too, so they are counted once more.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], int] = {}

    def progress(self, p: Progress) -> None:
        key = (p.ref, p.layer)
        grown = p.done - self._held.get(key, 0)
        self._held[key] = p.done
        if grown > 0:
            metrics.IMAGE_PULL_BYTES.inc(grown)

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Observe the block's duration in ``berth_image_pull_duration_seconds`` if it
        succeeds (a failed pull's time says nothing about pulling)."""
        started = time.perf_counter()
        yield
        metrics.IMAGE_PULL_DURATION.observe(time.perf_counter() - started)
