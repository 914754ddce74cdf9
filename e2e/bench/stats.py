"""Summary statistics with stated definitions, and how figures and ratios are printed.

- median: the middle value of the sorted samples; the mean of the two middle values when the
  count is even.
- percentile q (p99 = q 99): *nearest rank* — the smallest sample such that at least q % of
  the samples are less than or equal to it, i.e. ``sorted[ceil(q/100 * n) - 1]``. It is always
  a value that was observed; with fewer than 100 samples p99 is the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def median(samples: Sequence[float]) -> float:
    """The median; ValueError for no samples."""
    ordered = _sorted(samples)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, 0 < q <= 100; ValueError for no samples or q out of range."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = _sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def _sorted(samples: Sequence[float]) -> list[float]:
    if not samples:
        raise ValueError("no samples")
    return sorted(samples)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    n: int
    p50: float
    p99: float
    mean: float
    min: float
    max: float


def summarize(samples: Sequence[float]) -> Summary | None:
    """The summary of `samples`, or None when there are none."""
    if not samples:
        return None
    return Summary(
        n=len(samples),
        p50=median(samples),
        p99=percentile(samples, 99),
        mean=sum(samples) / len(samples),
        min=min(samples),
        max=max(samples),
    )


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or `theirs` is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def format_ratio(value: float | None) -> str:
    """``1.23x`` (three significant digits), ``n/a`` when there is no ratio."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{format_value(value)}x"


def format_value(value: float | None) -> str:
    """Three significant digits without exponent for the ranges we print; ``-`` for None."""
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:.0f}"
    decimals = 2 - math.floor(math.log10(magnitude))
    return f"{value:.{min(decimals, 6)}f}"
