"""CPU rate (nano-cores) from cumulative usage samples, per container or pod.

The kubelet reads stats every 10 s; crictl may poll every second, and one client can call
ContainerStats right after ListContainerStats. A rate over the last few milliseconds is noise,
so each key keeps two samples at least ``window`` apart and a new sample is compared with the
newest one that is at least ``window`` old::

    older ──(>= window)── newer ── now       rate = (now - newer) if now - newer >= window
                                                    (now - older) otherwise

A key with no sample yet is compared with its start (usage 0 at the container's start time),
so the first answer is the average since start rather than nothing. Usage that went backwards
(a cgroup recreated under the same key) restarts the key.
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000
DEFAULT_WINDOW_NS = NS_PER_S


@dataclass(frozen=True, slots=True)
class _Sample:
    at: int  # ns, wall clock (the same clock as the CRI timestamps)
    usage: int  # ns of CPU time


class CpuSampler:
    """Not thread-safe: the stats collector calls it under its lock."""

    def __init__(self, window_ns: int = DEFAULT_WINDOW_NS) -> None:
        self._window = window_ns
        self._samples: dict[str, tuple[_Sample | None, _Sample]] = {}

    def rate(self, key: str, *, at: int, usage: int, started_at: int = 0) -> int | None:
        """Nano-cores used by ``key`` up to ``at``; None when no interval is known yet.

        ``started_at`` (ns, 0 if unknown) is when usage was 0: the baseline of a new key.
        """
        now = _Sample(at, usage)
        entry = self._samples.get(key)
        if entry is None or usage < entry[1].usage:  # new key, or a counter reset
            self._samples[key] = (None, now)
            return _since_start(now, started_at) if entry is None else None
        older, newer = entry
        if at - newer.at >= self._window:
            self._samples[key] = (newer, now)
            return _nano_cores(newer, now)
        if older is not None:
            return _nano_cores(older, now)
        return _since_start(now, started_at)

    def forget(self, keep: set[str]) -> None:
        """Drop every key not in ``keep`` (containers and pods that are gone)."""
        for key in [k for k in self._samples if k not in keep]:
            del self._samples[key]


def _since_start(now: _Sample, started_at: int) -> int | None:
    return _nano_cores(_Sample(started_at, 0), now) if 0 < started_at < now.at else None


def _nano_cores(before: _Sample, after: _Sample) -> int:
    elapsed = after.at - before.at
    return (after.usage - before.usage) * NS_PER_S // elapsed if elapsed > 0 else 0
