from __future__ import annotations

from pathlib import Path

import pytest

from e2e.bench import options


def parse(*argv: str) -> options.Options:
    return options.from_args(options.parser().parse_args(list(argv)))


def test_defaults_are_the_full_run() -> None:
    opts = parse()
    assert (opts.seq_pods, opts.parallel, opts.exec_calls) == (20, (10, 50), 200)
    assert (opts.density_pods, opts.density_containers, opts.cpu_window) == (110, 2, 30.0)
    assert opts.big_layers * opts.big_layer_mb >= 100


def test_quick_then_flags() -> None:
    opts = parse("--quick", "--reps", "2", "--parallel", "3,6", "--out", "/tmp/x")
    assert opts.reps == 2 and opts.parallel == (3, 6) and opts.out == Path("/tmp/x")
    assert opts.seq_pods == options.QUICK["seq_pods"]


def test_lists_and_floats() -> None:
    opts = parse("--workloads", "pull,exec", "--runtimes", "berth", "--cpu-window", "2.5")
    assert opts.workloads == ("pull", "exec") and opts.runtimes == ("berth",)
    assert opts.cpu_window == 2.5


def test_unknown_workload() -> None:
    with pytest.raises(SystemExit, match="bogus"):
        parse("--workloads", "pull,bogus")


def test_endpoints_add_their_runtime() -> None:
    opts = parse("--endpoint", "crio=/run/crio/crio.sock,pid=42")
    assert opts.endpoints == ("crio=/run/crio/crio.sock,pid=42",)
    assert opts.runtimes == ("berth", "containerd", "crio")
