"""Helpers the workloads share: record-or-note a failed call, run calls on worker threads."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from cri.api.v1 import api_pb2
from e2e.bench import cri_ops
from e2e.bench.cri_ops import Target
from e2e.bench.records import Results

T = TypeVar("T")
MIB = 1024.0  # procfs gives kB; figures are in MiB


def attempt(results: Results, key: str, runtime: str, call: Callable[[], T]) -> T | None:
    """`call()`, or None after recording its error under figure `key`."""
    try:
        return call()
    except Exception as exc:
        results.error(key, runtime, cri_ops.describe(exc))
        return None


def in_parallel(
    workers: int, calls: Sequence[Callable[[], T]]
) -> tuple[float, list[T | BaseException]]:
    """Run `calls` on `workers` threads: (wall ms until all ended, result or exception each)."""

    def guarded(call: Callable[[], T]) -> T | BaseException:
        try:
            return call()
        except Exception as exc:
            return exc

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        outcomes = list(pool.map(guarded, calls))
    return (time.perf_counter() - start) * 1000, outcomes


def remove_every_pod(target: Target, workers: int = 4) -> int:
    """Tear down every pod of this run that the runtime still lists (a workload's safety net:
    a failed call may leave one); how many. Pods of other namespaces are never touched."""
    pods = target.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items
    ids = [p.id for p in pods if p.metadata.namespace == cri_ops.NAMESPACE]
    in_parallel(workers, [partial(cri_ops.teardown_pod, target, pid) for pid in ids])
    return len(ids)
