"""A whole run: set up, warm up, repetitions with the runtimes alternating, outputs, teardown.

Repetition r runs every workload that still has repetitions left, each on every runtime, in
the order berth→containerd when r is even and containerd→berth when odd, so slow drift of
the machine (caches, other load) falls on both alike. After each workload run the runtime's
remaining pods are torn down (a failed call may have left one) and that is noted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cri.api.v1 import api_pb2
from e2e.bench import cleanup, cri_ops, environment, report
from e2e.bench.cri_ops import Target
from e2e.bench.options import Options
from e2e.bench.records import Results
from e2e.bench.workloads import Context, Workload
from e2e.bench.workloads.common import remove_every_pod
from e2e.bench.workloads.containers import ContainersWorkload
from e2e.bench.workloads.critest import CritestWorkload
from e2e.bench.workloads.density import DensityWorkload
from e2e.bench.workloads.execsync import ExecWorkload
from e2e.bench.workloads.podstart import PodStartWorkload
from e2e.bench.workloads.pull import PullWorkload

ALL: dict[str, Workload] = {
    "podstart": PodStartWorkload(),
    "containers": ContainersWorkload(),
    "exec": ExecWorkload(),
    "pull": PullWorkload(),
    "density": DensityWorkload(),
    "critest": CritestWorkload(),
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def order(runtimes: Sequence[str], rep: int) -> list[str]:
    """The runtimes in run order for repetition `rep` (reversed on odd repetitions)."""
    return list(runtimes) if rep % 2 == 0 else list(reversed(runtimes))


def default_out() -> Path:
    return Path("bench-results") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run(options: Options) -> tuple[Results, Path]:
    out = options.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    results = Results(runtimes=options.runtimes, meta=_meta(options))
    chosen = [ALL[name] for name in ALL if name in options.workloads]
    for workload in chosen:
        workload.define(results, options)
    teardown = cleanup.Teardown(log=say)
    started = time.monotonic()
    with cleanup.interrupts_as_keyboard_interrupt():
        try:
            env = environment.setup(options, teardown, results, out, say)
            _measure(env, chosen, options, results)
        except KeyboardInterrupt:
            results.meta["aborted"] = "interrupted"
            say("interrupted; cleaning up")
        except Exception as exc:  # set-up or warm-up failed: still tear down and report
            results.meta["aborted"] = "".join(traceback.format_exception_only(exc)).strip()
            say(f"aborted: {traceback.format_exc()}")
        finally:
            say("tearing down")
            for error in teardown.run():
                results.note(f"teardown: {error}")
    results.meta["duration_s"] = round(time.monotonic() - started)
    results.meta["loadavg_end"] = _loadavg()
    write_outputs(results, out)
    return results, out


def _measure(
    env: environment.Environment, chosen: list[Workload], options: Options, results: Results
) -> None:
    log_root = env.workdir / "podlogs"
    targets = {
        name: Target(runtime=rt, image=env.images.busybox, log_dir=log_root / name)
        for name, rt in env.runtimes.items()
    }
    for target in targets.values():
        _warm_up(target, env, options)
    results.meta["loadavg_start"] = _loadavg()
    for rep in range(max((w.repetitions(options) for w in chosen), default=0)):
        for workload in [w for w in chosen if rep < w.repetitions(options)]:
            for name in order(options.runtimes, rep):
                say(f"rep {rep + 1}: {workload.name} on {name}")
                _ensure_image(targets[name], results, f"before {workload.name}, rep {rep + 1}")
                ctx = Context(options=options, results=results, images=env.images, rep=rep,
                              workdir=env.workdir, say=say)  # fmt: skip
                workload.run(targets[name], ctx)
                left = remove_every_pod(targets[name])
                if left:
                    results.note(f"{name}: {left} pods left after {workload.name} (rep {rep + 1})")


def _warm_up(target: Target, env: environment.Environment, options: Options) -> None:
    say(f"warming up {target.name}")
    cri_ops.pull(target, env.images.busybox)
    cri_ops.pull(target, env.images.pause)
    for _ in range(options.warmup):
        started = cri_ops.start_pod(target, cri_ops.unique("warm"))
        cri_ops.teardown_pod(target, started.pod.id)


def _ensure_image(target: Target, results: Results, when: str) -> None:
    """Pull busybox again if the runtime lost it (noted: it means a workload removed it)."""
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=target.image))
    if not target.images.ImageStatus(request, timeout=60).HasField("image"):
        results.note(f"{target.name}: {target.image} was missing {when}; pulled again")
        cri_ops.pull(target, target.image)


def write_outputs(results: Results, out: Path) -> None:
    """results.json (every raw sample), results.md (the report), plots/*.png."""
    try:
        from e2e.bench import plots
    except ImportError as exc:  # matplotlib is a dev dependency
        results.note(f"no plots: {exc}")
        plotted: list[Path] = []
    else:
        plotted = plots.plot_all(results, out / "plots")
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=1))
    (out / "results.md").write_text(report.render_markdown(results))
    for path in plotted:
        say(f"wrote {path}")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) \
        else "unknown"  # fmt: skip


def _meta(options: Options) -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[2]
    commit = _version(["git", "-C", str(repo), "describe", "--always", "--dirty"])
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "host": f"{platform.node()}, kernel {platform.release()}, {os.cpu_count()} CPUs",
        "berth": commit,
        "containerd": _version(["/usr/bin/containerd", "--version"]),
        "runc": _version(["/usr/sbin/runc", "--version"]),
        "options": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                    for k, v in _fields(options).items()},
    }  # fmt: skip


def _fields(options: Options) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}
