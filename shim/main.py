"""`berth-shim`: the shim's entry points.

    berth-shim template --dir D [--parent PID]   the template (see shim.template)
    berth-shim spawn --id ID --state-dir D        one shim, without a template:
        forks it detached, prints the spawn response frame on stdout, exits
    berth-shim delete --state-dir D --runtime R --runtime-root RR --id ID
        clean up after a dead shim; prints the exit status as JSON

berthd starts these with `python -I -S -c <bootstrap>` (shim.launcher),
never through site-packages.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shim import api, errors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth-shim")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("template", help="serve spawn requests on <dir>/template.sock")
    t.add_argument("--dir", type=Path, required=True)
    t.add_argument("--parent", type=int)
    s = sub.add_parser("spawn", help="start one detached shim")
    s.add_argument("--id", required=True)
    s.add_argument("--state-dir", type=Path, required=True)
    d = sub.add_parser("delete", help="clean up after a dead shim")
    d.add_argument("--state-dir", type=Path, required=True)
    d.add_argument("--runtime", required=True)
    d.add_argument("--runtime-root", required=True)
    d.add_argument("--id", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "template":
        from shim import template

        template.run(args.dir, args.parent)
    if args.command == "spawn":
        spec = api.ShimSpec(id=args.id, state_dir=args.state_dir.absolute())
        try:
            spec.validate()
        except errors.Error as e:
            print(f"berth-shim spawn: {e}", file=sys.stderr)
            return 2
        return _spawn(spec)
    return _delete(args)


def _spawn(spec: api.ShimSpec) -> int:
    from shim import daemon

    sys.stdout.flush()
    return 0 if daemon.spawn_shim(spec.id, str(spec.state_dir), sys.stdout.fileno(), 0) else 1


def _delete(args: argparse.Namespace) -> int:
    from shim import cleanup

    try:
        status = cleanup.delete(
            state_dir=args.state_dir,
            runtime=args.runtime,
            runtime_root=args.runtime_root,
            id=args.id,
        )
    except errors.Error as e:
        print(f"berth-shim delete: {e}", file=sys.stderr)
        return 1
    print(json.dumps(api.to_wire(status), sort_keys=True))
    return 0
