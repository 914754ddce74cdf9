"""``python -m e2e.soak [--pods 110] [--containers 2] [--minutes 30] …`` — see `e2e.soak`."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from e2e.drill.environment import standalone
from e2e.soak.analysis import MemoryLimits
from e2e.soak.run import Soak, SoakConfig


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m e2e.soak", description=__doc__)
    p.add_argument("--pods", type=int, default=110, help="pods kept running")
    p.add_argument("--containers", type=int, default=2, help="containers per pod")
    p.add_argument("--minutes", type=float, default=30.0, help="length of the churn")
    p.add_argument("--churn-workers", type=int, default=2, help="threads replacing pods")
    p.add_argument("--cycle-pause", type=float, default=1.0, help="s a worker rests per cycle")
    p.add_argument("--exec-rate", type=float, default=4.0, help="exec probes per second")
    p.add_argument("--relist-interval", type=float, default=1.0, help="s between relists")
    p.add_argument("--stats-interval", type=float, default=10.0, help="s between stats calls")
    p.add_argument("--sample-interval", type=float, default=5.0, help="s between samples")
    p.add_argument("--warmup", type=float, default=120.0, help="s of churn not judged")
    p.add_argument("--max-slope", type=float, default=20.0, help="MiB/h; negative: no check")
    p.add_argument("--max-growth", type=float, default=8.0, help="MiB after the warm-up")
    p.add_argument("--fd-slack", type=int, default=8, help="fds above the baseline allowed")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument(
        "--trace-memory",
        type=Path,
        default=None,
        metavar="DIR",
        help="run berthd under tracemalloc, snapshots in DIR; print what grew",
    )
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    p.add_argument("--workdir", type=Path, default=None, help="where everything goes")
    p.add_argument("--keep", action="store_true", help="keep the workdir (berthd.log…)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    config = SoakConfig(
        pods=args.pods,
        containers=args.containers,
        churn_s=args.minutes * 60,
        churn_workers=args.churn_workers,
        cycle_pause=args.cycle_pause,
        exec_rate=args.exec_rate,
        relist_interval=args.relist_interval,
        stats_interval=args.stats_interval,
        sample_interval=args.sample_interval,
        fd_slack=args.fd_slack,
        seed=seed,
        trace_dir=args.trace_memory,
        memory=MemoryLimits(
            warmup_s=args.warmup,
            max_slope=args.max_slope if args.max_slope >= 0 else None,
            max_growth=args.max_growth,
        ),
    )
    print(
        f"soak: {config.pods} pods x {config.containers} containers, {args.minutes:g} min of "
        f"churn, {config.churn_workers} churn workers, seed {seed}",
        flush=True,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    keep = args.keep or args.workdir is not None
    with standalone(workdir, 0, keep=keep) as env:
        report = Soak(env, config).run()
    report.leaks += [f"left behind (removed by the soak): {s}" for s in env.scrubbed]
    print(report.text())
    if keep:
        print(f"berthd log: {env.daemon.log_path}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
        print(f"JSON: {args.json}")
    if args.plot is not None:
        from e2e.soak.plot import plot

        print(f"plot: {plot(json.loads(json.dumps(report.to_json(), default=str)), args.plot)}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
