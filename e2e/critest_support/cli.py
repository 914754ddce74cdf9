"""`e2e/critest`: build critest's images, serve them, start a runtime, run critest, report.

Exit codes: 0 every spec that ran passed; 1 some failed; 2 bad usage or not root;
3 critest is not installed; 4 the set-up (images, registry, runtime) failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from e2e.critest_support import report, runner
from e2e.critest_support.session import RUNTIMES, Session
from e2e.images.build import DEFAULT_CACHE, critest_images

EXIT_FAILED, EXIT_USAGE, EXIT_SETUP, EXIT_INTERRUPTED = 1, 2, 4, 130
CRITEST_PORTS = (12000, 12001, 12002, 12003)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="e2e/critest",
        description="Run the CRI conformance suite (critest) against berth and/or containerd, "
        "offline: images are built from Debian packages and served from a loopback registry. "
        "Unknown arguments (e.g. --ginkgo.focus=Image) are passed to critest.",
    )
    parser.add_argument("--runtime", choices=[*RUNTIMES, "both"], default="berth")
    parser.add_argument("--critest", help="critest binary (default: critest on PATH)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="image build cache")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"), help="where logs go")
    parser.add_argument("--results", type=Path, help="summary JSON (default: in --log-dir)")
    args, extra = parser.parse_known_args(argv)
    return args, [a for a in extra if a != "--"]


def say(message: str) -> None:
    print(f"[e2e/critest] {message}", flush=True)


def busy_ports(ports: Sequence[int] = CRITEST_PORTS) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                busy.append(port)
    return busy


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        say("must run as root (it starts container runtimes)")
        return EXIT_USAGE
    critest = runner.find_critest(args.critest)
    if critest is None:
        print(runner.WHERE_CRITEST_COMES_FROM, file=sys.stderr)
        return runner.EXIT_NO_CRITEST
    if busy := busy_ports():
        say(f"warning: host ports {busy} are in use; the port-mapping specs will fail")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = list(RUNTIMES) if args.runtime == "both" else [args.runtime]
    try:
        summaries = run(names, critest, extra, args, stamp)
    except KeyboardInterrupt:
        say("interrupted; everything the run started has been cleaned up")
        return EXIT_INTERRUPTED
    if summaries is None:
        return EXIT_SETUP
    write_results(summaries, args.results or args.log_dir / f"critest-{stamp}-results.json")
    return EXIT_FAILED if any(s.failed or s.suite_failures for s in summaries) else 0


def run(
    names: list[str], critest: Path, extra: list[str], args: argparse.Namespace, stamp: str
) -> list[report.Summary] | None:
    started = time.monotonic()
    catalog = critest_images(args.cache)
    say(f"{len(catalog)} images ready in {time.monotonic() - started:.1f}s (cache {args.cache})")
    summaries: list[report.Summary] = []
    with Session.open(args.log_dir, stamp) as session:
        host = session.start_registry(catalog)
        say(f"registry on {host}; CNI bridge {session.net.bridge} ({session.net.subnet})")
        for name in names:
            summary = run_one(session, name, critest, extra)
            if summary is None:
                return None
            summaries.append(summary)
            print(report.format_summary(summary), flush=True)
    for note in session.notes:
        say(note)
    if len(summaries) > 1:
        print(report.format_comparison(summaries), flush=True)
    return summaries


def run_one(session: Session, name: str, critest: Path, extra: list[str]) -> report.Summary | None:
    log_path = session.log_dir / f"critest-{session.stamp}-{name}.log"
    json_report = session.workdir / f"{name}-report.json"
    try:
        runtime = session.start(name)
    except Exception as exc:
        say(f"{name} did not start: {exc}")
        return None
    say(f"{name} on {runtime.endpoint}; critest output in {log_path}")
    argv = runner.critest_argv(critest, runtime.endpoint, json_report, extra)
    code = runner.run_critest(argv, log_path, session.reaper.spawning)
    session.finish(runtime)
    say(f"critest exited {code}; {name} log kept in {session.daemon_log(runtime)}")
    if not json_report.exists():
        say(f"critest wrote no report for {name}")
        return None
    return report.summarize(name, json.loads(json_report.read_text()))


def write_results(summaries: list[report.Summary], path: Path) -> None:
    doc = {"runs": [s.to_json() for s in summaries]}
    if len(summaries) > 1:
        rows = report.comparison_rows(summaries)
        doc["differences"] = [{"spec": name, "states": row} for name, row in rows]
    path.write_text(json.dumps(doc, indent=1))
    say(f"results written to {path}")
