"""ExecSync round trips: `true` run N times back to back in one running container."""

from __future__ import annotations

from functools import partial

from cri.api.v1 import api_pb2
from e2e.bench import cri_ops
from e2e.bench.cri_ops import Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import attempt

KEY = "exec.sync"


class ExecWorkload:
    name = "exec"

    def define(self, results: Results, options: Options) -> None:
        results.define(FigureSpec(key=KEY, title="ExecSync round trip (`true`)", unit="ms",
                                  group="exec"))  # fmt: skip

    def repetitions(self, options: Options) -> int:
        return options.reps

    def run(self, target: Target, ctx: Context) -> None:
        res = ctx.results
        started = attempt(res, KEY, target.name,
                          partial(cri_ops.start_pod, target, cri_ops.unique("exec")))  # fmt: skip
        if started is None:
            return
        request = api_pb2.ExecSyncRequest(container_id=started.container_id, cmd=["true"],
                                          timeout=30)  # fmt: skip
        for _ in range(ctx.options.exec_calls):
            outcome = attempt(res, KEY, target.name, partial(_exec, target, request))
            if outcome is not None:
                res.add(KEY, target.name, outcome)
        attempt(res, KEY, target.name, partial(cri_ops.teardown_pod, target, started.pod.id))


def _exec(target: Target, request: api_pb2.ExecSyncRequest) -> float:
    ms, resp = cri_ops.timed(lambda: target.rt.ExecSync(request, timeout=60))
    if resp.exit_code != 0:
        raise RuntimeError(f"`true` exited {resp.exit_code}: {resp.stderr[:200]!r}")
    return ms
