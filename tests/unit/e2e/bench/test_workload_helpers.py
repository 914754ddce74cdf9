from __future__ import annotations

import json
from pathlib import Path

from e2e.bench.runner import order
from e2e.bench.workloads.critest import params, parse_output
from e2e.bench.workloads.density import checkpoints


def test_runtimes_alternate_between_repetitions() -> None:
    assert order(("berth", "containerd"), 0) == ["berth", "containerd"]
    assert order(("berth", "containerd"), 1) == ["containerd", "berth"]
    assert order(("berth", "containerd"), 2) == ["berth", "containerd"]


def test_density_checkpoints_include_the_memory_mark_and_the_end() -> None:
    assert checkpoints(110, 2, 100) == [11, 28, 50, 55, 82, 110]
    assert checkpoints(6, 2, 10) == [1, 2, 3, 4, 5, 6]
    assert checkpoints(10, 2, 500) == [1, 2, 5, 8, 10]  # mark beyond the node: left out


def test_critest_output_parsing(tmp_path: Path) -> None:
    data = {
        "operationsNames": ["CreatePod", "StopPod"],
        "numParallel": 1,
        "datapoints": [
            {"sampleIndex": 0, "operationsDurationsNs": [2_000_000, 500_000]},
            {"sampleIndex": 1, "operationsDurationsNs": [4_000_000, 1_500_000]},
        ],
    }
    (tmp_path / "pod_benchmark_data.json").write_text(json.dumps(data))
    (tmp_path / "other.json").write_text("[]")
    assert parse_output(tmp_path) == {
        "pod: CreatePod": [2.0, 4.0],
        "pod: StopPod": [0.5, 1.5],
    }


def test_critest_params_are_flat() -> None:
    text = params(20, "127.0.0.1:5000/bench/busybox:latest")
    assert "podsNumber: 20\n" in text
    assert 'imagePullingBenchmarkImage: "127.0.0.1:5000/bench/busybox:latest"' in text
    assert text.endswith(
        'imageListingBenchmarkImages:\n  - "127.0.0.1:5000/bench/busybox:latest"\n'
    )
