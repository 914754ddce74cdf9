"""Pod start with the image cached: RunPodSandbox + CreateContainer + StartContainer.

Sequential (pods accumulate, as on a node, then are torn down one by one — timed too), and
P pods at once on P threads sharing the runtime's channel (per-pod latency and the wall time
until all P run). The daemon's peak RSS is sampled while the largest batch starts.
"""

from __future__ import annotations

import contextlib
from functools import partial

from e2e.bench import cri_ops, procfs
from e2e.bench.cri_ops import PodStart, Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import MIB, attempt, in_parallel

GROUP = "pod start"
SEQ = {
    "run": "RunPodSandbox, sequential",
    "create": "CreateContainer, sequential",
    "start": "StartContainer, sequential",
    "total": "pod start (Run+Create+Start), sequential",
    "teardown": "pod stop+remove (StopPodSandbox+RemovePodSandbox), sequential",
}


class PodStartWorkload:
    name = "podstart"

    def define(self, results: Results, options: Options) -> None:
        for part, title in SEQ.items():
            results.define(FigureSpec(key=f"podstart.seq.{part}", title=title, unit="ms",
                                      group=GROUP))  # fmt: skip
        for p in options.parallel:
            results.define(FigureSpec(key=f"podstart.par{p}.run",
                                      title=f"RunPodSandbox, {p} in parallel", unit="ms",
                                      group=GROUP))  # fmt: skip
            results.define(FigureSpec(key=f"podstart.par{p}.pod",
                                      title=f"pod start, {p} in parallel: each pod", unit="ms",
                                      group=GROUP))  # fmt: skip
            results.define(FigureSpec(key=f"podstart.par{p}.wall",
                                      title=f"pod start, {p} in parallel: all running",
                                      unit="ms", group=GROUP))  # fmt: skip
        if options.parallel:
            results.define(FigureSpec(key="memory.rss_podstart",
                                      title=f"daemon peak RSS, {max(options.parallel)} pods "
                                      "starting", unit="MiB", group="memory"))  # fmt: skip

    def repetitions(self, options: Options) -> int:
        return options.reps

    def run(self, target: Target, ctx: Context) -> None:
        self._sequential(target, ctx)
        for p in ctx.options.parallel:
            self._parallel(target, ctx, p)

    def _sequential(self, target: Target, ctx: Context) -> None:
        res, name = ctx.results, target.name
        started: list[PodStart] = []
        for _ in range(ctx.options.seq_pods):
            one = attempt(res, "podstart.seq.total", name,
                          partial(cri_ops.start_pod, target, cri_ops.unique("seq")))  # fmt: skip
            if one is not None:
                started.append(one)
                res.add("podstart.seq.run", name, one.run_ms)
                res.add("podstart.seq.create", name, one.create_ms)
                res.add("podstart.seq.start", name, one.start_ms)
                res.add("podstart.seq.total", name, one.total_ms)
        for one in started:
            ms = attempt(res, "podstart.seq.teardown", name,
                         partial(cri_ops.teardown_pod, target, one.pod.id))  # fmt: skip
            if ms is not None:
                res.add("podstart.seq.teardown", name, ms)

    def _parallel(self, target: Target, ctx: Context, p: int) -> None:
        res, name = ctx.results, target.name
        calls = [partial(cri_ops.start_pod, target, cri_ops.unique(f"par{p}")) for _ in range(p)]
        pid = target.runtime.daemon_pid()
        with contextlib.ExitStack() as stack:
            sampler = stack.enter_context(procfs.PeakSampler(pid)) if pid else None
            wall, outcomes = in_parallel(p, calls)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for exc in failed:
            res.error(f"podstart.par{p}.pod", name, cri_ops.describe(exc))
        ok = [o for o in outcomes if isinstance(o, PodStart)]
        res.extend(f"podstart.par{p}.pod", name, [o.total_ms for o in ok])
        res.extend(f"podstart.par{p}.run", name, [o.run_ms for o in ok])
        if not failed:
            res.add(f"podstart.par{p}.wall", name, wall)
        if sampler and p == max(ctx.options.parallel):
            res.add("memory.rss_podstart", name, sampler.peak_kb / MIB)
        in_parallel(p, [partial(cri_ops.teardown_pod, target, o.pod.id) for o in ok])
