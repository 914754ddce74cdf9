"""One-time streaming tokens."""

from __future__ import annotations

import re

import pytest

from cri.streaming.tokens import TokenCache, TooManyRequests


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_eight_url_safe_characters_and_distinct() -> None:
    cache: TokenCache[str] = TokenCache()
    tokens = {cache.insert("req") for _ in range(200)}
    assert len(tokens) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{8}", t) for t in tokens)


def test_a_token_is_consumed_once() -> None:
    cache: TokenCache[str] = TokenCache()
    token = cache.insert("exec request")
    assert cache.consume(token) == "exec request"
    assert cache.consume(token) is None
    assert cache.consume("unknown!") is None


def test_tokens_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache: TokenCache[str] = TokenCache(ttl=60.0, clock=clock)
    token = cache.insert("a")
    clock.now += 59.9
    fresh = cache.insert("b")
    clock.now += 0.2
    assert cache.consume(token) is None
    assert cache.consume(fresh) == "b"


def test_too_many_pending_requests_is_resource_exhausted() -> None:
    clock = FakeClock()
    cache: TokenCache[int] = TokenCache(max_pending=3, clock=clock)
    for i in range(3):
        cache.insert(i)
    with pytest.raises(TooManyRequests) as raised:
        cache.insert(3)
    assert raised.value.kind == "resource_exhausted"
    assert len(cache) == 3


def test_consumed_and_expired_tokens_free_their_slots() -> None:
    clock = FakeClock()
    cache: TokenCache[int] = TokenCache(ttl=1.0, max_pending=2, clock=clock)
    first = cache.insert(1)
    cache.insert(2)
    cache.consume(first)
    cache.insert(3)
    clock.now += 1.0
    assert len(cache) == 0
    cache.insert(4)
    cache.insert(5)
