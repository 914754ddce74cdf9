"""The soak's PNG is drawn from a report's JSON form, samples at the same moment included."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from e2e.soak.plot import plot
from e2e.soak.sampler import Sample


def test_a_report_is_drawn(tmp_path: Path) -> None:
    samples = [
        Sample(
            t=float(t), phase="churn" if t else "setup", rss_mib=60.0 + t / 100, pss_mib=40.0,
            cpu_s=t * 0.05, fds=30, threads=14, shims=6, pods=3, containers=6, load1=1.0,
        )
        for t in range(0, 100, 5)
    ]  # fmt: skip
    samples.append(samples[-1])  # the last sample and the final one can share a moment
    report = {
        "config": {"pods": 3, "containers": 2},
        "pods_churned": 9,
        "memory": {"fit_from_s": 10.0, "fit_to_s": 95.0, "slope_mib_per_h": 36.0,
                   "intercept_mib": 60.1},
        "samples": [asdict(s) for s in samples],
    }  # fmt: skip
    out = plot(report, tmp_path / "soak.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
