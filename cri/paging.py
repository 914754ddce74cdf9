"""Pages for the server-streaming list RPCs (StreamContainers, StreamContainerStats, ...).

A node with hundreds of pods would otherwise answer in one message of several MiB; pages of
``PAGE_SIZE`` items keep each message small and let the client start early. An empty result
is a stream with no messages, which clients read as an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

PAGE_SIZE = 100


def pages(items: Iterable[T], size: int = PAGE_SIZE) -> Iterator[Sequence[T]]:
    """``items`` in consecutive lists of at most ``size`` (the last may be shorter)."""
    if size <= 0:
        raise ValueError(f"page size must be positive, not {size}")
    it = iter(items)
    while page := list(islice(it, size)):
        yield page
