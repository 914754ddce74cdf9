"""The soak's verdicts from samples: the fitted slope, the growth, CPU, and the log parser."""

from __future__ import annotations

import pytest

from e2e.soak.analysis import MemoryLimits, cpu_figures, least_squares, memory_verdict
from e2e.soak.sampler import Sample
from e2e.soak.workload import parse_log


def sample(t: float, rss: float, *, phase: str = "churn", cpu: float = 0.0) -> Sample:
    return Sample(
        t=t, phase=phase, rss_mib=rss, pss_mib=rss / 2, cpu_s=cpu, fds=10, threads=5,
        shims=0, pods=0, containers=0, load1=0.0,
    )  # fmt: skip


def test_least_squares_finds_the_line() -> None:
    slope, intercept = least_squares([(0, 1.0), (1, 3.0), (2, 5.0)])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(1.0)


def test_least_squares_needs_two_distinct_xs() -> None:
    with pytest.raises(ValueError):
        least_squares([(1, 1.0)])
    with pytest.raises(ValueError):
        least_squares([(1, 1.0), (1, 2.0)])


def test_flat_memory_passes_and_the_warmup_is_not_judged() -> None:
    samples = [sample(0, 50.0, phase="setup")]
    samples += [sample(10 + t, 60.0 + min(t, 120) / 10) for t in range(0, 600, 5)]  # warm-up rise
    verdict = memory_verdict(samples, MemoryLimits(warmup_s=130.0), pods_churned=100)
    assert verdict.problems == ()
    assert verdict.slope_mib_per_h == pytest.approx(0.0, abs=0.01)
    assert verdict.slope_late_mib_per_h == pytest.approx(0.0, abs=0.01)
    assert verdict.rss_setup == 50.0
    assert verdict.rss_after_warmup == verdict.rss_end == 72.0


def test_a_steady_rise_fails_on_slope_and_growth() -> None:
    # 1 MiB a minute: 60 MiB/h, about 8 MiB over the judged part.
    samples = [sample(t, 60.0 + t / 60) for t in range(0, 720, 5)]
    verdict = memory_verdict(samples, MemoryLimits(warmup_s=120.0), pods_churned=400)
    assert verdict.slope_mib_per_h == pytest.approx(60.0, rel=0.01)
    assert verdict.slope_late_mib_per_h == pytest.approx(60.0, rel=0.01)
    assert len(verdict.problems) == 2
    assert verdict.growth_kib_per_pod > 0


def test_no_slope_limit_still_judges_growth() -> None:
    samples = [sample(t, 60.0 + t) for t in range(0, 40)]
    limits = MemoryLimits(warmup_s=10.0, window_s=5.0, max_slope=None, max_growth=16.0)
    verdict = memory_verdict(samples, limits, pods_churned=10)
    assert [p for p in verdict.problems if "grew" in p]
    assert not [p for p in verdict.problems if "MiB/h" in p]


def test_a_churn_shorter_than_its_warmup_is_a_problem() -> None:
    samples = [sample(t, 60.0) for t in range(0, 30, 5)]
    verdict = memory_verdict(samples, MemoryLimits(warmup_s=120.0), pods_churned=1)
    assert "nothing to judge" in verdict.problems[0]


def test_cpu_is_the_share_of_a_core_over_the_churn() -> None:
    samples = [sample(t, 60.0, cpu=t * 0.25) for t in range(0, 100, 10)]
    figures = cpu_figures(samples)
    assert figures is not None
    assert figures.mean_pct == pytest.approx(25.0)
    assert figures.max_pct == pytest.approx(25.0)


def test_a_whole_log_parses() -> None:
    text = "".join(f"2026-11-28T10:00:0{i}.0Z stdout F soak {i}\n" for i in range(3))
    assert parse_log(text + "2026-11-28T10:00:04.0Z std") == ([0, 1, 2], [])


def test_a_gap_a_partial_line_and_a_stranger_are_found() -> None:
    text = (
        "T stdout F soak 0\n"
        "T stdout F soak 2\n"
        "T stdout P soak 3\n"
        "T stderr F oops\n"
    )  # fmt: skip
    numbers, problems = parse_log(text)
    assert numbers == [0, 2]
    assert len(problems) == 3
    assert "expected 1" in problems[0]
