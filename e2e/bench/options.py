"""Every count and duration of a run, with the full defaults and the `--quick` smoke preset."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

from e2e.bench import external

WORKLOADS = ("podstart", "containers", "pull", "exec", "density", "critest")


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    reps: int = 3  # repetitions of podstart, containers, exec (runtimes alternate each one)
    warmup: int = 2  # unrecorded pod start/stop cycles per runtime before the first rep
    seq_pods: int = 20
    parallel: tuple[int, ...] = (10, 50)
    containers: int = 20  # containers created+started, then stopped+removed, in one pod
    exec_calls: int = 200
    exec_stream_mb: int = 128  # MiB a streaming exec writes to stdout, per transport and rep
    pull_reps: int = 3
    big_layers: int = 4
    big_layer_mb: int = 30
    density_pods: int = 110
    density_containers: int = 2  # per pod
    density_workers: int = 4  # pods started / torn down concurrently while ramping
    density_reps: int = 1
    memory_at: int = 100  # the container count the per-container memory figures are taken at
    cpu_window: float = 30.0  # seconds of kubelet-cadence polling for the CPU figure
    relist_interval: float = 1.0
    stats_interval: float = 10.0
    relist_burst: int = 50  # back-to-back relists for the latency distribution
    stats_burst: int = 10
    workloads: tuple[str, ...] = WORKLOADS
    runtimes: tuple[str, ...] = ("berth", "containerd")
    endpoints: tuple[str, ...] = ()  # NAME=unix:///path[,pid=N]: a runtime already running
    out: Path | None = None  # default bench-results/<timestamp>


QUICK = {
    "reps": 1,
    "warmup": 1,
    "seq_pods": 4,
    "parallel": (4,),
    "containers": 3,
    "exec_calls": 20,
    "exec_stream_mb": 8,
    "pull_reps": 1,
    "big_layers": 2,
    "big_layer_mb": 10,
    "density_pods": 6,
    "memory_at": 10,
    "cpu_window": 4.0,
    "relist_interval": 0.5,
    "stats_interval": 2.0,
    "relist_burst": 5,
    "stats_burst": 2,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m e2e.bench",
        description="berth vs containerd over CRI: same workloads, alternating, as root.",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run (small counts)")
    for field in fields(Options):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "endpoints":
            p.add_argument("--endpoint", dest="endpoints", action="append",
                           help="NAME=unix:///path[,pid=N]: drive a runtime started elsewhere "
                           "(it must pull from the run's loopback registry over HTTP)")  # fmt: skip
        elif field.name in ("parallel", "workloads", "runtimes"):
            p.add_argument(flag, help=f"comma-separated (default {_show(field)})")
        elif field.name == "out":
            p.add_argument(flag, type=Path, help="output dir (default bench-results/<time>)")
        else:
            kind = float if isinstance(field.default, float) else int
            p.add_argument(flag, type=kind, help=f"default {field.default}")
    return p


def _show(field: dataclasses.Field[object]) -> str:
    return ",".join(str(v) for v in field.default)  # type: ignore[attr-defined]


def from_args(args: argparse.Namespace) -> Options:
    """Defaults, then the quick preset if asked, then every flag given."""
    values: dict[str, object] = dict(QUICK) if args.quick else {}
    for field in fields(Options):
        given = getattr(args, field.name)
        if given is None:
            continue
        if field.name == "parallel":
            values[field.name] = tuple(int(v) for v in given.split(",") if v)
        elif field.name in ("workloads", "runtimes"):
            values[field.name] = tuple(v for v in given.split(",") if v)
        elif field.name == "endpoints":
            values[field.name] = tuple(given)
        else:
            values[field.name] = given
    options = Options(**values)  # type: ignore[arg-type]
    named = [external.parse_endpoint(e).name for e in options.endpoints]
    missing = tuple(n for n in named if n not in options.runtimes)
    if missing:
        options = dataclasses.replace(options, runtimes=options.runtimes + missing)
    unknown = set(options.workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    return options
