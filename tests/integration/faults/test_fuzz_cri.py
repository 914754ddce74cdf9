"""Property-based fuzzing of every CRI request type against one running berthd.

For each RPC, `EXAMPLES` generated requests (``BERTH_FUZZ_EXAMPLES``; seed
``BERTH_FUZZ_SEED``, else derandomized): every call answers within its deadline with a
documented status code, error texts carry no credentials or host file contents, berthd stays
up and answers Version; whatever the fuzzer created is removed after each RPC. At the end
nothing may have appeared on the host outside berthd's dirs, no credential may be on disk or in
the log, and runc must never have been handed a bundle that climbs out of its cgroup.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.integration.faults.conftest import make_harness, stop_harness
from tests.integration.faults.fuzz_runner import EXAMPLES, METHODS, SEED, FuzzRun, Outcome
from tests.integration.faults.fuzz_strategies import requests
from tests.integration.faults.harness import none
from tests.support.failpoints import Guard
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.cni, pytest.mark.registry]


@pytest.fixture(scope="module")
def fuzz(
    tmp_path_factory: pytest.TempPathFactory, cni_net: CniNet, registry: LocalRegistry
) -> Iterator[FuzzRun]:
    base = tmp_path_factory.mktemp("fz")
    harness = make_harness(base, cni_net, registry)
    canary = base / "canary"
    harness.log_dir = canary / "logs"
    run = FuzzRun(harness=harness, canary=canary, registry_host=registry.host)
    allowed = (str(canary / "mnt"), str(harness.daemon.state), str(harness.daemon.root), "/sys")
    harness.points.arm(guard=Guard(mount_sources=allowed))
    run.start()
    print(f"\nfuzzing berthd: {EXAMPLES} examples per RPC, seed {SEED or 'derandomized'}")
    yield run
    total = sum(run.counts.values())
    print(f"\nfuzzed {total} requests over {len(run.counts)} RPCs: {run.counts}")
    stop_harness(harness)


def fuzz_one(run: FuzzRun, method: MethodDescriptor) -> list[Outcome]:
    outcomes: list[Outcome] = []
    strategy = requests(method, run.targets())

    @settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        phases=(Phase.generate,),  # every finding is collected; no shrinking against a daemon
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def send(request: Message) -> None:
        outcomes.append(run.send(method, request))

    if SEED is not None:
        send = seed(SEED)(send)
    send()
    return outcomes


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_fuzzed_requests_get_documented_answers_in_time(
    fuzz: FuzzRun, method: MethodDescriptor
) -> None:
    outcomes = fuzz_one(fuzz, method)
    fuzz.counts[method.name] = len(outcomes)
    problems = fuzz.judge(outcomes)
    fuzz.clean_up()
    none(problems)


def test_fuzzing_left_nothing_outside_berthd_and_no_credential(fuzz: FuzzRun) -> None:
    problems = fuzz.traces() + fuzz.secrets_on_disk()
    problems += [c.message for c in fuzz.harness.points.guarded()]
    fuzz.clean_up(keep=set())
    problems += fuzz.harness.leaks()
    none(problems)


def test_canary_is_where_we_think(fuzz: FuzzRun) -> None:
    """The watch works: a file named with the mark in /tmp is seen (and removed)."""
    from tests.integration.faults.fuzz_strategies import MARK

    probe = Path("/tmp") / f"{MARK}-self-test"
    probe.write_text("x")
    assert f"created on the host: {probe}" in fuzz.traces()
    assert not probe.exists()
