"""``python -m e2e.drill [--seed N] [--crashes 200] [--workers 3] …`` — see `e2e.drill`."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from e2e.drill.environment import standalone
from e2e.drill.run import Drill, DrillConfig


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m e2e.drill", description=__doc__)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a random one)")
    p.add_argument("--crashes", type=int, default=200, help="crash points")
    p.add_argument("--workers", type=int, default=3, help="workload threads")
    p.add_argument("--shim-kills", type=float, default=0.2, help="share of shim SIGKILLs")
    p.add_argument("--max-run", type=float, default=1.5, help="max seconds between crashes")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed check")
    p.add_argument("--workdir", type=Path, default=None, help="where everything goes")
    p.add_argument("--keep", action="store_true", help="keep the workdir (berthd.log…)")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    config = DrillConfig(
        seed=seed,
        crashes=args.crashes,
        workers=args.workers,
        shim_kills=args.shim_kills,
        max_run=args.max_run,
        fail_fast=args.fail_fast,
    )
    print(f"crash drill: seed {seed}, {config.crashes} crash points", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drill-", dir="/tmp"))
    keep = args.keep or args.workdir is not None
    with standalone(workdir, config.workers, keep=keep) as env:
        report = Drill(env, config).run()
    report.violations += [f"left behind (removed by the drill): {s}" for s in env.scrubbed]
    print(report.text())
    if keep:
        print(f"berthd log: {env.daemon.log_path}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
