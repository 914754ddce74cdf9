"""Whether berthd's memory stayed flat during the churn, and the soak's other figures.

"Flat" has two parts, both over the churn phase after its warm-up (``warmup_s`` seconds from
the start of the churn are left out: caches, thread pools and the allocator's arenas fill up
then):

- **slope**: the least-squares line through every RSS sample after the warm-up, in MiB per
  hour, must not exceed ``max_slope`` (None: not checked, for runs too short to fit a line);
- **growth**: the median RSS of the last ``window_s`` seconds of the churn minus the median
  RSS of the first ``window_s`` seconds after the warm-up must not exceed ``max_growth`` MiB.

Medians over a window, not single samples, so that one garbage-collection moment does not
decide. The same figures are given per churned pod (KiB per pod), which is what a leak costs.
The slope over the second half of the churn alone is given too (not judged): a leak keeps
rising there, a cache that filled up during the first half does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from e2e.bench.stats import median, percentile
from e2e.soak.sampler import Sample

HOUR = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryLimits:
    warmup_s: float = 120.0
    window_s: float = 60.0
    max_slope: float | None = 20.0  # MiB per hour
    max_growth: float = 8.0  # MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryVerdict:
    rss_setup: float  # MiB: the last sample before the fill
    rss_full: float  # MiB: the first churn sample (every pod running)
    rss_after_warmup: float  # median over the window after the warm-up
    rss_end: float  # median over the last window of the churn
    rss_peak: float
    rss_after_drain: float  # the last sample
    pss_after_warmup: float
    pss_end: float
    slope_mib_per_h: float
    slope_late_mib_per_h: float  # over the second half of the churn only
    growth_mib: float
    growth_kib_per_pod: float
    fitted_samples: int
    fit_from_s: float  # the line was fitted over [fit_from_s, fit_to_s] (soak seconds)
    fit_to_s: float
    intercept_mib: float  # the fitted line's value at fit_from_s
    problems: tuple[str, ...]


def least_squares(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the line y = slope * x + intercept; ValueError under 2 points
    or when every x is the same."""
    if len(points) < 2:
        raise ValueError("a line needs two points")
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        raise ValueError("every point has the same x")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def phase(samples: Sequence[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.phase == name]


def memory_verdict(
    samples: Sequence[Sample], limits: MemoryLimits, pods_churned: int
) -> MemoryVerdict:
    churn = phase(samples, "churn")
    if len(churn) < 2:
        raise ValueError("fewer than two samples in the churn phase")
    begin, end = churn[0].t, churn[-1].t
    fitted = [s for s in churn if s.t >= begin + limits.warmup_s]
    problems: list[str] = []
    if len(fitted) < 2:
        problems.append(
            f"the churn ({end - begin:.0f}s) is not longer than its warm-up "
            f"({limits.warmup_s:.0f}s): nothing to judge"
        )
        fitted = churn
    fit_from = fitted[0].t
    slope, intercept = least_squares([(s.t - fit_from, s.rss_mib) for s in fitted])
    first = [s for s in fitted if s.t <= fit_from + limits.window_s]
    last = [s for s in fitted if s.t >= end - limits.window_s]
    after_warmup = median([s.rss_mib for s in first])
    at_end = median([s.rss_mib for s in last])
    growth = at_end - after_warmup
    slope_h = slope * HOUR
    late = [s for s in churn if s.t >= (begin + end) / 2]
    slope_late = least_squares([(s.t, s.rss_mib) for s in late])[0] if len(late) > 1 else 0.0
    if limits.max_slope is not None and slope_h > limits.max_slope:
        problems.append(
            f"berthd's RSS grows {slope_h:.1f} MiB/h after the warm-up "
            f"(limit {limits.max_slope:.1f} MiB/h)"
        )
    if growth > limits.max_growth:
        problems.append(
            f"berthd's RSS grew {growth:.1f} MiB from after the warm-up to the end of the "
            f"churn (limit {limits.max_growth:.1f} MiB)"
        )
    before = [s for s in samples if s.phase == "setup"]
    return MemoryVerdict(
        rss_setup=before[-1].rss_mib if before else 0.0,
        rss_full=churn[0].rss_mib,
        rss_after_warmup=after_warmup,
        rss_end=at_end,
        rss_peak=max(s.rss_mib for s in samples),
        rss_after_drain=samples[-1].rss_mib,
        pss_after_warmup=median([s.pss_mib for s in first]),
        pss_end=median([s.pss_mib for s in last]),
        slope_mib_per_h=round(slope_h, 2),
        slope_late_mib_per_h=round(slope_late * HOUR, 2),
        growth_mib=round(growth, 2),
        growth_kib_per_pod=round(growth * 1024 / pods_churned, 3) if pods_churned else 0.0,
        fitted_samples=len(fitted),
        fit_from_s=fit_from,
        fit_to_s=end,
        intercept_mib=round(intercept, 2),
        problems=tuple(problems),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuFigures:
    mean_pct: float  # of one core, over the churn phase
    p50_pct: float  # over the intervals between samples
    p99_pct: float
    max_pct: float


def cpu_series(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """berthd's CPU between consecutive samples, in % of one core, at the later sample's
    time (samples taken at the same moment are skipped)."""
    out = []
    for a, b in itertools.pairwise(samples):
        if b.t > a.t:
            out.append((b.t, 100.0 * (b.cpu_s - a.cpu_s) / (b.t - a.t)))
    return out


def cpu_percents(samples: Sequence[Sample]) -> list[float]:
    return [pct for _, pct in cpu_series(samples)]


def cpu_figures(samples: Sequence[Sample]) -> CpuFigures | None:
    churn = phase(samples, "churn")
    if len(churn) < 2:
        return None
    percents = cpu_percents(churn)
    seconds = churn[-1].t - churn[0].t
    return CpuFigures(
        mean_pct=round(100.0 * (churn[-1].cpu_s - churn[0].cpu_s) / seconds, 2),
        p50_pct=round(median(percents), 2),
        p99_pct=round(percentile(percents, 99), 2),
        max_pct=round(max(percents), 2),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Durations:
    n: int
    p50_s: float
    p99_s: float
    max_s: float


def durations(values: Sequence[float]) -> Durations | None:
    if not values:
        return None
    return Durations(
        n=len(values),
        p50_s=round(median(values), 3),
        p99_s=round(percentile(values, 99), 3),
        max_s=round(max(values), 3),
    )
