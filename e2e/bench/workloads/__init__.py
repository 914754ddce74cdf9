"""One module per workload. Each defines its figures, then runs against one runtime at a time.

A workload's `run` leaves the runtime as it found it (no pods, the cached images only), so the
runner can alternate runtimes between repetitions. Failures are recorded per figure, not
raised: one failing call must not hide the figures of the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from e2e.bench.cri_ops import Target
from e2e.bench.images import BenchImages
from e2e.bench.options import Options
from e2e.bench.records import Results


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    options: Options
    results: Results
    images: BenchImages
    rep: int
    workdir: Path  # scratch space of this run (removed at the end)
    say: Callable[[str], None]


class Workload(Protocol):
    name: str

    def define(self, results: Results, options: Options) -> None:
        """Register this workload's figures (the table's rows, in order)."""
        ...

    def repetitions(self, options: Options) -> int:
        """How many times the runner alternates the runtimes through `run`."""
        ...

    def run(self, target: Target, ctx: Context) -> None:
        """Measure `target` once, recording into ctx.results; must not raise for a failed
        call (record it), and must leave no pod behind."""
        ...
