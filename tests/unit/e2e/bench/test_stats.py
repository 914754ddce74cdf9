from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e.bench import stats

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


def test_median_odd_and_even() -> None:
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 3, 2]) == 2.5
    assert stats.median([7]) == 7


def test_p99_is_nearest_rank() -> None:
    assert stats.percentile(list(range(1, 101)), 99) == 99
    assert stats.percentile(list(range(1, 201)), 99) == 198
    assert stats.percentile(list(range(1, 11)), 99) == 10  # below 100 samples: the maximum
    assert stats.percentile([5.0], 99) == 5.0
    assert stats.percentile([1, 2, 3, 4], 50) == 2  # a sample, not an interpolation


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_rejects_q_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        stats.percentile([1.0], q)


def test_no_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        stats.median([])
    assert stats.summarize([]) is None


@given(st.lists(finite, min_size=1), st.floats(min_value=0.1, max_value=100))
def test_percentile_is_an_observed_value_with_enough_below(values: list[float], q: float) -> None:
    p = stats.percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= math.ceil(q / 100 * len(values))


@given(st.lists(finite, min_size=1))
def test_summary_is_ordered(values: list[float]) -> None:
    summary = stats.summarize(values)
    assert summary is not None
    assert summary.min <= summary.p50 <= summary.p99 <= summary.max
    assert summary.n == len(values)


def test_ratio() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, 0.0) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "n/a"), (1.5, "1.50x"), (0.1234, "0.123x"), (12.34, "12.3x"), (float("nan"), "n/a")],
)
def test_format_ratio(value: float | None, text: str) -> None:
    assert stats.format_ratio(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0"), (0.004567, "0.00457"), (3.14159, "3.14"), (42.42, "42.4"),
     (1234.5, "1234"), (-2.5, "-2.50")],
)  # fmt: skip
def test_format_value(value: float | None, text: str) -> None:
    assert stats.format_value(value) == text
