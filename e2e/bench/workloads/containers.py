"""Containers in one running pod: N x (CreateContainer + StartContainer), then N x (StopContainer
+ RemoveContainer), sequential. The container exits at once on SIGTERM, so the stop measures
the runtime, not a grace period."""

from __future__ import annotations

from functools import partial

from e2e.bench import cri_ops
from e2e.bench.cri_ops import Pod, Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import attempt

GROUP = "containers"
FIGURES = {
    "containers.create": "CreateContainer, in a running pod",
    "containers.start": "StartContainer, in a running pod",
    "containers.create_start": "container create+start",
    "containers.stop": "StopContainer (exits on SIGTERM)",
    "containers.remove": "RemoveContainer",
    "containers.stop_remove": "container stop+remove",
}


class ContainersWorkload:
    name = "containers"

    def define(self, results: Results, options: Options) -> None:
        for key, title in FIGURES.items():
            results.define(FigureSpec(key=key, title=title, unit="ms", group=GROUP))

    def repetitions(self, options: Options) -> int:
        return options.reps

    def run(self, target: Target, ctx: Context) -> None:
        res = ctx.results
        ran = attempt(res, "containers.create_start", target.name,
                      partial(cri_ops.run_pod, target, cri_ops.unique("ctr")))  # fmt: skip
        if ran is None:
            return
        pod = ran[1]
        ids = [cid for cid in (self._up(target, ctx, pod, i) for i in range(ctx.options.containers))
               if cid]  # fmt: skip
        for cid in ids:
            self._down(target, ctx, cid)
        attempt(res, "containers.stop_remove", target.name,
                partial(cri_ops.teardown_pod, target, pod.id))  # fmt: skip

    def _up(self, target: Target, ctx: Context, pod: Pod, i: int) -> str | None:
        res, name = ctx.results, target.name
        made = attempt(res, "containers.create_start", name,
                       partial(cri_ops.create_container, target, pod, f"c{i}"))  # fmt: skip
        if made is None:
            return None
        create_ms, cid = made
        start_ms = attempt(res, "containers.create_start", name,
                           partial(cri_ops.start_container, target, cid))  # fmt: skip
        if start_ms is None:
            return cid
        res.add("containers.create", name, create_ms)
        res.add("containers.start", name, start_ms)
        res.add("containers.create_start", name, create_ms + start_ms)
        return cid

    def _down(self, target: Target, ctx: Context, cid: str) -> None:
        res, name = ctx.results, target.name
        stop_ms = attempt(res, "containers.stop_remove", name,
                          partial(cri_ops.stop_container, target, cid))  # fmt: skip
        remove_ms = attempt(res, "containers.stop_remove", name,
                            partial(cri_ops.remove_container, target, cid))  # fmt: skip
        if stop_ms is not None and remove_ms is not None:
            res.add("containers.stop", name, stop_ms)
            res.add("containers.remove", name, remove_ms)
            res.add("containers.stop_remove", name, stop_ms + remove_ms)
