"""A short density and churn soak in the suite: 4 pods x 2 containers, about 35 s of churn
with exec probes, log checks, relists and stats; then everything removed, and nothing may be
left (mounts, pins, veths, leases, cgroups, shims, runc state, snapshots, blobs, store rows,
berthd's fds). The long run is `python -m e2e.soak --pods 110 --minutes 30`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.drill.environment import DrillEnv, in_suite
from e2e.soak.analysis import MemoryLimits
from e2e.soak.run import Soak, SoakConfig
from tests.support.fixtures_pods import CniNet
from tests.support.fixtures_registry import LocalRegistry
from tests.support.timing import scaled

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.cni,
    pytest.mark.registry,
    pytest.mark.slow,
]

CHURN_S = float(os.environ.get("BERTH_SOAK_SECONDS") or scaled(35.0))


@pytest.fixture
def soak_env(
    tmp_path_factory: pytest.TempPathFactory, cni_net: CniNet, registry: LocalRegistry
) -> Iterator[DrillEnv]:
    workdir = Path(tmp_path_factory.mktemp("soak"))
    with in_suite(
        workdir, cni_net.conf_dir, cni_net.bridge, registry.host, registry.ref(), []
    ) as env:
        yield env


def test_short_soak_churns_pods_and_leaks_nothing(soak_env: DrillEnv) -> None:
    config = SoakConfig(
        pods=4,
        containers=2,
        churn_s=CHURN_S,
        churn_workers=2,
        cycle_pause=0.2,
        exec_rate=4.0,
        sample_interval=1.0,
        progress_interval=10.0,
        seed=7,
        # Too short to fit a line; a growth of more than 16 MiB in half a minute still fails.
        memory=MemoryLimits(warmup_s=10.0, window_s=5.0, max_slope=None, max_growth=16.0),
    )
    report = Soak(soak_env, config).run()
    print(report.text())
    assert report.pods_churned >= 5, "the churn did not replace pods"
    assert report.probes >= 20 and report.log_lines_checked > 0
    assert report.pods_removed == report.pods_started
    assert not report.failed, report.text()
