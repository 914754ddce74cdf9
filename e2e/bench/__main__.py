"""`python -m e2e.bench`: run the side-by-side benchmark (as root), print the table."""

from __future__ import annotations

import os
import sys

from e2e.bench import options, report, runner


def main(argv: list[str] | None = None) -> int:
    args = options.parser().parse_args(argv)
    opts = options.from_args(args)
    if os.geteuid() != 0:
        print("e2e.bench needs root (it starts runtimes, mounts, bridges)", file=sys.stderr)
        return 2
    results, out = runner.run(opts)
    print(report.render_markdown(results))
    print(f"results: {out.resolve()}")
    return 1 if results.meta.get("aborted") else 0


if __name__ == "__main__":
    sys.exit(main())
