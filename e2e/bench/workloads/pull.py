"""Image pull + unpack throughput of the big image (incompressible layers), removed between
repetitions, with the daemon's peak RSS and CPU time during the pull.

CPU time (user + system of the daemon process, all its threads) is the figure the machine's
load disturbs least: on a shared 2-core machine the wall time mostly says how much CPU the
daemon was given, the CPU time how much it needed.

Peak RSS: VmHWM after resetting it through clear_refs, and a 20 ms VmRSS sampler beside it
(the larger of the two is kept; the sampler alone where the kernel refuses the reset). After
RemoveImage the runtime's root should shrink back: a runtime that keeps the blobs would make
the next repetition a cache hit, so that is noted.
"""

from __future__ import annotations

import contextlib
from functools import partial

from e2e.bench import cri_ops, procfs
from e2e.bench.cri_ops import Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import MIB, attempt

KEPT_FRACTION = 0.5


class PullWorkload:
    name = "pull"

    def define(self, results: Results, options: Options) -> None:
        size = options.big_layers * options.big_layer_mb
        what = f"{size} MB image, {options.big_layers} layers"
        results.define(FigureSpec(key="pull.mbps", title=f"pull+unpack throughput, {what}",
                                  unit="MB/s", group="pull", better="higher"))  # fmt: skip
        results.define(FigureSpec(key="pull.ms", title=f"PullImage, {what}", unit="ms",
                                  group="pull"))  # fmt: skip
        results.define(FigureSpec(key="pull.remove", title=f"RemoveImage, {what}", unit="ms",
                                  group="pull"))  # fmt: skip
        results.define(FigureSpec(key="pull.cpu", title=f"daemon CPU time per pull, {what}",
                                  unit="ms", group="pull"))  # fmt: skip
        results.define(FigureSpec(key="memory.rss_pull", title="daemon peak RSS during the pull",
                                  unit="MiB", group="memory"))  # fmt: skip

    def repetitions(self, options: Options) -> int:
        return options.pull_reps

    def run(self, target: Target, ctx: Context) -> None:
        res, name, image = ctx.results, target.name, ctx.images.big
        with contextlib.suppress(Exception):
            cri_ops.remove_image(target, image)  # absent is the normal case
        before = target.runtime.disk_usage()
        pid = target.runtime.daemon_pid()
        hwm_reset = pid is not None and procfs.reset_peak(pid)
        cpu_before = procfs.cpu_seconds(pid) if pid else None
        with contextlib.ExitStack() as stack:
            sampler = stack.enter_context(procfs.PeakSampler(pid)) if pid else None
            ms = attempt(res, "pull.ms", name, partial(cri_ops.pull, target, image))
        cpu_after = procfs.cpu_seconds(pid) if pid else None
        if ms is None:
            return
        res.add("pull.ms", name, ms)
        res.add("pull.mbps", name, ctx.images.big_bytes / 1e6 / (ms / 1000))
        if cpu_before is not None and cpu_after is not None:
            res.add("pull.cpu", name, (cpu_after - cpu_before) * 1000)
        if pid is not None and sampler is not None:
            hwm = (procfs.peak_rss_kb(pid) or 0) if hwm_reset else 0
            res.add("memory.rss_pull", name, max(hwm, sampler.peak_kb) / MIB)
        removed = attempt(res, "pull.remove", name, partial(cri_ops.remove_image, target, image))
        if removed is not None:
            res.add("pull.remove", name, removed)
            self._check_freed(target, ctx, before)

    def _check_freed(self, target: Target, ctx: Context, before: int) -> None:
        kept = target.runtime.disk_usage() - before
        if kept > KEPT_FRACTION * ctx.images.big_bytes:
            ctx.results.note(
                f"{target.name}: {kept / 1e6:.0f} MB more under its root after RemoveImage "
                f"than before the pull (rep {ctx.rep}): the next pull may be a cache hit"
            )
