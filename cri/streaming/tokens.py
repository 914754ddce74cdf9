"""One-time tokens that bind a streaming URL to the CRI request that created it.

kubelet asks for a URL (Exec/Attach/PortForward RPC), then connects to it at most
once, soon after. So a token is single-use, expires after `ttl` seconds, and at
most `max_pending` can wait at a time — beyond that the RPC fails with
ResourceExhausted, which kubelet turns into HTTP 429 for its client.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from cri import errors

T = TypeVar("T")

# 6 random bytes encode to exactly 8 URL-safe base64 characters (48 bits).
_TOKEN_BYTES = 6


class TooManyRequests(errors.ResourceExhausted):
    """Too many streaming URLs were handed out and not used yet."""


class TokenCache(Generic[T]):
    """Maps fresh tokens to pending requests; consuming a token removes it.

    Not thread-safe: use it from the event loop only.
    """

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        max_pending: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_pending
        self._clock = clock
        # Insertion order is expiry order because the TTL is the same for all.
        self._pending: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        self._evict_expired()
        return len(self._pending)

    def insert(self, request: T) -> str:
        """Store `request` and return its new token; raise TooManyRequests if full."""
        self._evict_expired()
        if len(self._pending) >= self._max:
            raise TooManyRequests(
                f"too many pending streaming requests ({len(self._pending)} of {self._max})"
            )
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        while token in self._pending:
            token = secrets.token_urlsafe(_TOKEN_BYTES)
        self._pending[token] = (self._clock() + self._ttl, request)
        return token

    def consume(self, token: str) -> T | None:
        """Return and forget the request for `token`; None if unknown, used or expired."""
        self._evict_expired()
        entry = self._pending.pop(token, None)
        return None if entry is None else entry[1]

    def _evict_expired(self) -> None:
        now = self._clock()
        while self._pending:
            token, (deadline, _) = next(iter(self._pending.items()))
            if deadline > now:
                return
            del self._pending[token]
