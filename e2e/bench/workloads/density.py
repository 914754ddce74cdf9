"""A full node: P pods x C sleeping containers (default 110 x 2), ramped up W pods at a time.

On the way up, at set pod counts, the memory of the daemon, its helpers and its shims (a
plot against the number of containers; per-container figures at `memory_at` containers).
At full density: relist and stats latencies, then the daemon's (and shims') CPU while a
kubelet's cadence is replayed for `cpu_window` seconds (relist every `relist_interval`,
ListContainerStats + ListPodSandboxStats every `stats_interval`). An UNIMPLEMENTED stats RPC
is recorded as such, not as a failure. Then everything is torn down, W pods at a time.
"""

from __future__ import annotations

import math
import time
from functools import partial

from e2e.bench import cri_ops, procfs
from e2e.bench.cri_ops import PodStart, Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import MIB, in_parallel
from e2e.bench.workloads.memory import snapshot
from e2e.bench.workloads.stats_calls import STATS_CALLS, call_stats

GROUP = "density"


def checkpoints(pods: int, per_pod: int, memory_at: int) -> list[int]:
    """Pod counts to take memory at: 10/25/50/75/100 % of `pods`, and `memory_at` containers."""
    marks = {max(1, round(pods * f)) for f in (0.1, 0.25, 0.5, 0.75, 1.0)}
    if memory_at <= pods * per_pod:
        marks.add(math.ceil(memory_at / per_pod))
    return sorted(marks)


class DensityWorkload:
    name = "density"

    def define(self, results: Results, options: Options) -> None:
        at = f"{options.density_pods} pods x {options.density_containers}"
        m = options.memory_at
        specs = [
            ("density.relist", f"PLEG relist (ListPodSandbox+ListContainers), {at}", "ms", GROUP),
            *((f"density.{key}", f"{rpc}, {at}", "ms", GROUP) for key, rpc in STATS_CALLS),
            ("density.cpu", f"daemon CPU at kubelet cadence, {at}", "% of a core", GROUP),
            ("density.shim_cpu", f"shims' CPU at kubelet cadence, {at}", "% of a core", GROUP),
            ("density.ramp", f"start {at} ({options.density_workers} pods at a time)", "s", GROUP),
            ("density.teardown", f"stop+remove {options.density_pods} pods", "s", GROUP),
            ("memory.rss_idle", "daemon RSS, idle (no pods)", "MiB", "memory"),
            ("memory.rss_density", f"daemon RSS, {at}", "MiB", "memory"),
            ("memory.shim_rss", f"shim RSS per container, {m} containers", "MiB", "memory"),
            ("memory.shim_pss", f"shim PSS per container, {m} containers", "MiB", "memory"),
            ("memory.total_pss", f"daemon+helpers+shims PSS, {m} containers", "MiB", "memory"),
        ]
        for key, title, unit, group in specs:
            results.define(FigureSpec(key=key, title=title, unit=unit, group=group))

    def repetitions(self, options: Options) -> int:
        return options.density_reps

    def run(self, target: Target, ctx: Context) -> None:
        self._memory_point(target, ctx, 0)
        pods = self._ramp(target, ctx)
        if pods:
            self._poll(target, ctx)
        wall, _ = in_parallel(
            ctx.options.density_workers,
            [partial(cri_ops.teardown_pod, target, p.pod.id) for p in pods],
        )
        ctx.results.add("density.teardown", target.name, wall / 1000)

    def _ramp(self, target: Target, ctx: Context) -> list[PodStart]:
        opts, res = ctx.options, ctx.results
        marks = checkpoints(opts.density_pods, opts.density_containers, opts.memory_at)
        pods: list[PodStart] = []
        elapsed, done = 0.0, 0
        for mark in marks:
            calls = [partial(cri_ops.start_pod, target, cri_ops.unique("dense"),
                             opts.density_containers) for _ in range(mark - done)]  # fmt: skip
            wall, outcomes = in_parallel(opts.density_workers, calls)
            elapsed, done = elapsed + wall, mark
            for outcome in outcomes:
                if isinstance(outcome, PodStart):
                    pods.append(outcome)
                else:
                    res.error("density.ramp", target.name, cri_ops.describe(outcome))
            self._memory_point(target, ctx, len(pods) * opts.density_containers)
        if len(pods) == opts.density_pods:
            res.add("density.ramp", target.name, elapsed / 1000)
        return pods

    def _memory_point(self, target: Target, ctx: Context, containers: int) -> None:
        res, name = ctx.results, target.name
        snap = snapshot(target.runtime)
        if snap.daemon is None:
            return
        res.point("daemon RSS [MiB]", name, containers, snap.daemon.rss_kb / MIB)
        res.point("shims RSS, total [MiB]", name, containers, snap.shim_rss_mib)
        res.point("shims PSS, total [MiB]", name, containers, snap.shim_pss_mib)
        res.point("daemon+helpers+shims PSS [MiB]", name, containers, snap.total_pss_mib)
        if containers == 0:
            res.add("memory.rss_idle", name, snap.daemon.rss_kb / MIB)
        if containers == ctx.options.memory_at and snap.shims:
            res.note(
                f"{name}: {len(snap.shims)} shim processes for {containers} containers, "
                f"{snap.shim_rss_mib / len(snap.shims):.2f} MiB RSS and "
                f"{snap.shim_pss_mib / len(snap.shims):.2f} MiB PSS and "
                f"{snap.shim_private_dirty_mib / len(snap.shims):.2f} MiB Private_Dirty "
                "each on average"
            )
            res.add("memory.shim_rss", name, snap.shim_rss_mib / containers)
            res.add("memory.shim_pss", name, snap.shim_pss_mib / containers)
            res.add("memory.total_pss", name, snap.total_pss_mib)
        if containers == ctx.options.density_pods * ctx.options.density_containers:
            res.add("memory.rss_density", name, snap.daemon.rss_kb / MIB)

    def _poll(self, target: Target, ctx: Context) -> None:
        opts, res, name = ctx.options, ctx.results, target.name
        for _ in range(opts.relist_burst):
            res.add("density.relist", name, cri_ops.relist(target))
        for _ in range(opts.stats_burst):
            call_stats(target, res)
        self._cpu_window(target, ctx)

    def _cpu_window(self, target: Target, ctx: Context) -> None:
        opts, res, name = ctx.options, ctx.results, target.name
        pid, shims = target.runtime.daemon_pid(), target.runtime.shim_pids()
        if pid is None:
            res.set_status("density.cpu", name, "skipped: no daemon pid")
            return
        before, shims_before = procfs.cpu_seconds(pid) or 0.0, _cpu(shims)
        start = time.monotonic()
        next_relist = next_stats = start
        while (now := time.monotonic()) < start + opts.cpu_window:
            if now >= next_relist:
                res.add("density.relist", name, cri_ops.relist(target))
                next_relist += opts.relist_interval
            if now >= next_stats:
                call_stats(target, res)
                next_stats += opts.stats_interval
            time.sleep(max(0.0, min(next_relist, next_stats, start + opts.cpu_window) - now))
        window = time.monotonic() - start
        res.add("density.cpu", name, ((procfs.cpu_seconds(pid) or 0.0) - before) / window * 100)
        res.add("density.shim_cpu", name, (_cpu(shims) - shims_before) / window * 100)


def _cpu(pids: list[int]) -> float:
    return sum(procfs.cpu_seconds(p) or 0.0 for p in pids)
