"""A short crash drill in the suite: five crash points (SIGKILL of berthd, or of a shim) under a
concurrent workload; after each, nothing acknowledged is lost and nothing half-made is left.
The long run is `python -m e2e.drill --seed N --crashes 200`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.drill.environment import DrillEnv, churn_facts, in_suite
from e2e.drill.run import Drill, DrillConfig
from tests.integration.faults.harness import none
from tests.support import oci_builder as ob
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.cni,
    pytest.mark.registry,
    pytest.mark.slow,
]

SEED = int(os.environ.get("BERTH_DRILL_SEED", "20261128"))
CRASHES = int(os.environ.get("BERTH_DRILL_CRASHES", "5"))


@pytest.fixture
def drill_env(
    tmp_path_factory: pytest.TempPathFactory, cni_net: CniNet, registry: LocalRegistry
) -> Iterator[DrillEnv]:
    workdir = Path(tmp_path_factory.mktemp("drill"))

    def push(repo: str, tag: str, image: ob.Image) -> str:
        return registry.push(repo, tag, image)

    churn = churn_facts(push, registry.host, workers=2)
    with in_suite(
        workdir, cni_net.conf_dir, cni_net.bridge, registry.host, registry.ref(), churn
    ) as env:
        yield env


def test_short_crash_drill_loses_nothing_and_leaks_nothing(drill_env: DrillEnv) -> None:
    config = DrillConfig(seed=SEED, crashes=CRASHES, workers=2, max_run=1.0)
    report = Drill(drill_env, config).run()
    print(report.text())
    assert len(report.points) == CRASHES
    none(report.violations)
