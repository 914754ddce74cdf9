from __future__ import annotations

from cri.stats.cpu import CpuSampler

S = 1_000_000_000


def test_first_sample_is_the_average_since_start() -> None:
    sampler = CpuSampler(window_ns=S)
    # 2 s of CPU over the 4 s since start: half a core.
    assert sampler.rate("c", at=104 * S, usage=2 * S, started_at=100 * S) == S // 2


def test_first_sample_without_start_is_unknown() -> None:
    assert CpuSampler().rate("c", at=5 * S, usage=S) is None


def test_rate_over_the_last_window() -> None:
    sampler = CpuSampler(window_ns=S)
    sampler.rate("c", at=10 * S, usage=0)
    assert sampler.rate("c", at=12 * S, usage=S) == S // 2  # 1 s CPU in 2 s
    assert sampler.rate("c", at=14 * S, usage=S + 2 * S) == S  # a full core since 12 s


def test_calls_closer_than_the_window_use_the_older_sample() -> None:
    sampler = CpuSampler(window_ns=S)
    sampler.rate("c", at=10 * S, usage=0)
    sampler.rate("c", at=12 * S, usage=2 * S)  # keeps (10, 0) and (12, 2)
    # 1 ms later: against the sample 2 s back, not a 1 ms interval.
    rate = sampler.rate("c", at=12 * S + 1_000_000, usage=2 * S + 1_000_000)
    assert rate is not None and abs(rate - S) < S // 100


def test_counter_reset_restarts_the_key() -> None:
    sampler = CpuSampler(window_ns=S)
    sampler.rate("c", at=10 * S, usage=5 * S)
    assert sampler.rate("c", at=12 * S, usage=S) is None
    assert sampler.rate("c", at=14 * S, usage=2 * S) == S // 2


def test_forget_drops_keys() -> None:
    sampler = CpuSampler(window_ns=S)
    sampler.rate("a", at=10 * S, usage=0)
    sampler.rate("b", at=10 * S, usage=0)
    sampler.forget({"a"})
    assert sampler.rate("a", at=12 * S, usage=S) == S // 2
    assert sampler.rate("b", at=12 * S, usage=S) is None  # starts over
